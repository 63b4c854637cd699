#!/usr/bin/python3
"""Writes ONNX model pairs (old -> new) for the delta benchmark.

Each base model is a conv stem followed by an MLP head, every weight a float32 initializer stored
as raw_data (the layout real exporters produce). Each pair models one way a fleet's model really
changes between versions. Everything is seeded, so the corpus is the same on every machine; the
seeds are independent of anything the delta codecs were developed against.

Usage: /usr/bin/python3 bench/delta/make_corpus.py OUT_DIR [--sizes 2,20,100]
Writes OUT_DIR/<size>mb/<pair>/{old,new}.onnx and OUT_DIR/pairs.csv (pair,size_mb,old,new).
"""

import argparse
import csv
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Seeds: base model of size S MB uses BASE_SEED + S; each variant uses VARIANT_SEED[name] + S.
BASE_SEED = 1000
VARIANT_SEED = {
    "last-layer": 2000,
    "finetune-partial": 3000,
    "finetune-full": 4000,
    "prune-30": 5000,
    "insert-layer": 6000,
    "quantize-qdq": 7000,
    "int8-finetune": 8000,
    # Held out: added after the codecs were tuned on the pairs above, to check that what they
    # learned (pruning thresholds, quantization grids, sparse changes) carries over to variants
    # they never saw: other pruning and quantization schemes, another float format.
    "prune-finetune": 9000,
    "qdq-per-channel": 10000,
    "qdq-asym-clip": 11000,
    "fp16-finetune": 12000,
    # Blind: written after the last change to the codecs and measured once, as they came out.
    "prune-rows": 13000,
    "qdq-int4-rows": 14000,
    "lora-merge": 15000,
    "finetune-1e-2": 16000,
    # Blind, second round: written after lora-merge showed the gap and before the codec learned
    # anything about low-rank changes; measured once, as they came out.
    "lora-r32-half": 17000,
    "lora-fp16": 18000,
    # Issue 13: a CNN whose classifier holds about 93% of the bytes, retrained as last-layer's is.
    # auto's stopping rule was tuned after seeing it (not blind).
    "head-retrain": 19000,
}
PAIRS = list(VARIANT_SEED)
HELD_OUT = ["prune-finetune", "qdq-per-channel", "qdq-asym-clip", "fp16-finetune"]
BLIND = ["prune-rows", "qdq-int4-rows", "lora-merge", "finetune-1e-2", "lora-r32-half", "lora-fp16"]

NUM_CLASSES = 1000
# head-retrain's model: one hidden Gemm after the stem, then a classifier over this many classes,
# so that the classifier is about 93% of the bytes (2000 / (128 + 2000), less the stem's share).
WIDE_HEAD_CLASSES = 2000
STEM = [(3, 32), (32, 64), (64, 128)]  # 3x3 convolutions, (in, out) channels
HIDDEN_LAYERS = 6  # square W x W Gemms in the head
OPSET = 17


class Model:
    """An ordered list of layers; each layer is a node plus its initializers."""

    def __init__(self):
        self.layers = []  # list of (kind, {name: np.ndarray}, extra)

    def copy_with(self, transform):
        m = Model()
        for kind, tensors, extra in self.layers:
            m.layers.append((kind, {n: transform(n, a) for n, a in tensors.items()}, dict(extra)))
        return m

    def float_names(self):
        return [n for _, t, _ in self.layers for n, a in t.items() if a.dtype == np.float32]


def hidden_width(size_mb):
    # params ~= HIDDEN_LAYERS*W^2 + (128 + NUM_CLASSES)*W, solved for the requested byte size.
    params = size_mb * 1e6 / 4
    a, b = HIDDEN_LAYERS, 128 + NUM_CLASSES
    return max(16, int((-b + math.sqrt(b * b + 4 * a * params)) / (2 * a)))


def he(rng, shape, fan_in):
    return (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def add_stem(m, rng):
    for i, (cin, cout) in enumerate(STEM):
        m.layers.append(("conv", {f"conv{i}.weight": he(rng, (cout, cin, 3, 3), cin * 9),
                                  f"conv{i}.bias": (rng.standard_normal(cout) * 0.01).astype(np.float32)},
                         {}))


def add_gemms(m, rng, dims):
    """Gemms dims[0] -> dims[1] -> ... -> dims[-1]; the last is the classifier."""
    for i in range(len(dims) - 1):
        m.layers.append(("gemm", {f"fc{i}.weight": he(rng, (dims[i + 1], dims[i]), dims[i]),
                                  f"fc{i}.bias": (rng.standard_normal(dims[i + 1]) * 0.01).astype(np.float32)},
                         {"last": i == len(dims) - 2}))


def base_model(size_mb):
    rng = np.random.default_rng(BASE_SEED + size_mb)
    m = Model()
    add_stem(m, rng)
    width = hidden_width(size_mb)
    dims = [STEM[-1][1]] + [width] * (HIDDEN_LAYERS + 1) + [NUM_CLASSES]
    add_gemms(m, rng, dims)
    return m


def wide_head_model(size_mb, seed):
    """The conv stem, one hidden Gemm (128 -> H) and a classifier (H -> WIDE_HEAD_CLASSES), H
    chosen so that the model has the requested size: the classifier is most of the file."""
    rng = np.random.default_rng(seed)
    m = Model()
    add_stem(m, rng)
    stem = sum(cout * (cin * 9 + 1) for cin, cout in STEM)
    width = max(16, int((size_mb * 1e6 / 4 - stem) / (STEM[-1][1] + 1 + WIDE_HEAD_CLASSES)))
    dims = [STEM[-1][1], width, WIDE_HEAD_CLASSES]
    add_gemms(m, rng, dims)
    return m


def head_retrain_pair(base, size_mb):
    # A CNN whose classifier is ~93% of the file; only the classifier is retrained (last-layer's
    # change on another shape: nearly every byte changes, and nothing moves).
    old = wide_head_model(size_mb, VARIANT_SEED["head-retrain"] + size_mb)
    return old, variant(old, "last-layer", size_mb + VARIANT_SEED["head-retrain"])


def classes_of(model):
    return next(a.shape[0] for k, t, e in model.layers if e.get("last") for a in t.values())


def to_onnx(model, name):
    nodes, inits = [], []
    x = "input"
    for li, (kind, tensors, extra) in enumerate(model.layers):
        # int8 layers carry (q, scale, zero point) and a DequantizeLinear in front of the op.
        names = list(tensors)
        for n in names:
            inits.append(numpy_helper.from_array(tensors[n], n))
        w, b = names[0], names[1]
        if extra.get("int8"):
            nodes.append(helper.make_node("DequantizeLinear", [names[0], names[2], names[3]], [f"{w}.dq"]))
            w = f"{w}.dq"
        y = f"l{li}.out"
        if kind == "conv":
            nodes.append(helper.make_node("Conv", [x, w, b], [f"{y}.pre"], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [f"{y}.pre"], [y]))
            if li == len(STEM) - 1:
                nodes.append(helper.make_node("GlobalAveragePool", [y], [f"{y}.gap"]))
                nodes.append(helper.make_node("Flatten", [f"{y}.gap"], [f"{y}.flat"]))
                y = f"{y}.flat"
        else:
            out = y if extra.get("last") else f"{y}.pre"
            nodes.append(helper.make_node("Gemm", [x, w, b], [out], transB=1))
            if not extra.get("last"):
                nodes.append(helper.make_node("Relu", [out], [y]))
        x = y
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, classes_of(model)])],
        initializer=inits)
    proto = helper.make_model(graph, producer_name="edgefleet-bench",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    return proto


def scale_noise(rng, rel):
    return lambda n, a: (a * (1 + rng.standard_normal(a.shape) * rel)).astype(np.float32) \
        if a.dtype == np.float32 else a


def qdq_rows(a, levels):
    """Symmetric fake quantization to +-levels with one float32 scale per row (output channel)."""
    rows = a.reshape(a.shape[0], -1)
    scale = (np.maximum(np.abs(rows).max(axis=1, keepdims=True), 1e-12) / np.float32(levels)
             ).astype(np.float32)
    return (np.clip(np.round(rows / scale), -levels, levels) * scale).astype(np.float32
                                                                             ).reshape(a.shape)


def variant(base, pair, size_mb):
    rng = np.random.default_rng(VARIANT_SEED[pair] + size_mb)
    if pair == "last-layer":
        # Only the classifier (the final Gemm) is retrained; its weights move substantially.
        last = [n for k, t, e in base.layers if e.get("last") for n in t]
        return base.copy_with(lambda n, a: (a + rng.standard_normal(a.shape).astype(np.float32)
                                            * a.std() * 0.5) if n in last else a)
    if pair == "finetune-partial":
        names = base.float_names()
        tail = set(names[int(len(names) * 0.7):])
        f = scale_noise(rng, 1e-3)
        return base.copy_with(lambda n, a: f(n, a) if n in tail else a)
    if pair == "finetune-full":
        return base.copy_with(scale_noise(rng, 1e-3))
    if pair == "prune-30":
        def prune(n, a):
            if not n.endswith(".weight"):
                return a
            cut = np.quantile(np.abs(a), 0.3)
            return np.where(np.abs(a) < cut, np.float32(0), a).astype(np.float32)
        return base.copy_with(prune)
    if pair == "insert-layer":
        # A new hidden W x W layer in the middle of the head: every later tensor shifts.
        m = base.copy_with(lambda n, a: a)
        gemms = [i for i, (k, _, _) in enumerate(m.layers) if k == "gemm"]
        at = gemms[len(gemms) // 2]
        width = m.layers[at][1][next(iter(m.layers[at][1]))].shape[1]
        m.layers.insert(at, ("gemm", {"fc_inserted.weight": he(rng, (width, width), width),
                                      "fc_inserted.bias": np.zeros(width, np.float32)}, {}))
        return m
    if pair == "quantize-qdq":
        # Per-tensor symmetric int8 quantize/dequantize round trip, stored back as float32.
        def qdq(n, a):
            scale = max(float(np.abs(a).max()), 1e-12) / 127.0
            return (np.clip(np.round(a / scale), -127, 127) * scale).astype(np.float32)
        return base.copy_with(qdq)
    if pair == "prune-finetune":
        # Prune half of each weight matrix by magnitude with a 0/1 mask (negative weights become
        # -0.0, as torch.nn.utils.prune leaves them), then fine-tune the survivors.
        def prune_tune(n, a):
            if not n.endswith(".weight"):
                return (a * (1 + rng.standard_normal(a.shape) * 5e-4)).astype(np.float32)
            mask = (np.abs(a) >= np.quantile(np.abs(a), 0.5)).astype(np.float32)
            return (a * mask * (1 + rng.standard_normal(a.shape).astype(np.float32) * 5e-4)
                    ).astype(np.float32)
        return base.copy_with(prune_tune)
    if pair == "qdq-per-channel":
        # Symmetric int8 with one scale per output channel (row), float32 arithmetic, as
        # onnxruntime's per-channel QDQ does for weights; biases stay float.
        return base.copy_with(lambda n, a: qdq_rows(a, 127) if n.endswith(".weight") else a)
    if pair == "qdq-asym-clip":
        # Asymmetric uint8 per tensor, range clipped to the 0.1/99.9 percentiles (calibration),
        # float64 arithmetic; every tensor, biases included.
        def asym(n, a):
            lo, hi = (float(v) for v in np.percentile(a, [0.1, 99.9]))
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            scale = max(hi - lo, 1e-12) / 255.0
            zp = round(-lo / scale)
            q = np.clip(np.round(a.astype(np.float64) / scale) + zp, 0, 255)
            return ((q - zp) * scale).astype(np.float32)
        return base.copy_with(asym)
    if pair == "prune-rows":
        # Structured pruning: the quarter of each Gemm's output neurons (weight rows) with the
        # smallest L2 norm removed, i.e. their rows and bias entries set to zero.
        dead = {}
        def prune_rows(n, a):
            layer = n.rsplit(".", 1)[0]
            if n.endswith(".weight") and layer.startswith("fc") and a.ndim == 2:
                norms = np.linalg.norm(a, axis=1)
                dead[layer] = norms < np.quantile(norms, 0.25)
                return np.where(dead[layer][:, None], np.float32(0), a).astype(np.float32)
            if n.endswith(".bias") and layer in dead:
                return np.where(dead[layer], np.float32(0), a).astype(np.float32)
            return a
        return base.copy_with(prune_rows)
    if pair == "qdq-int4-rows":
        # Symmetric 4-bit fake quantization with one scale per row (float32 arithmetic).
        return base.copy_with(lambda n, a: qdq_rows(a, 7) if n.endswith(".weight") else a)
    if pair == "lora-merge":
        # A rank-8 adapter merged into every Gemm weight: W + (alpha / r) * B @ A.
        def merge(n, a):
            if not (n.endswith(".weight") and n.startswith("fc") and a.ndim == 2):
                return a
            r = 8
            b = rng.standard_normal((a.shape[0], r)).astype(np.float32) * a.std() * 0.05
            lo = rng.standard_normal((r, a.shape[1])).astype(np.float32) * 0.05
            return (a + (16.0 / r) * (b @ lo)).astype(np.float32)
        return base.copy_with(merge)
    if pair == "lora-r32-half":
        # Rank-32 adapters (alpha 32) on the second half of the head only, merged in float32.
        fcs = [n for n in base.float_names() if n.startswith("fc") and n.endswith(".weight")]
        tuned = set(fcs[len(fcs) // 2:])
        def merge32(n, a):
            if n not in tuned:
                return a
            r = 32
            b = rng.standard_normal((a.shape[0], r)).astype(np.float32) * a.std() * 0.02
            lo = (rng.standard_normal((r, a.shape[1])) / math.sqrt(a.shape[1])).astype(np.float32)
            return (a + (32.0 / r) * (b @ lo)).astype(np.float32)
        return base.copy_with(merge32)
    if pair == "finetune-1e-2":
        # A longer fine-tune: every float moves by about 1% of itself.
        return base.copy_with(scale_noise(rng, 1e-2))
    raise ValueError(pair)


def fp16_pair(base, size_mb):
    # A float16 deployment fine-tuned (1e-3 relative) and exported as float16 again.
    old = base.copy_with(lambda n, a: a.astype(np.float16))
    tuned = variant(base, "finetune-full", size_mb + VARIANT_SEED["fp16-finetune"])
    return old, tuned.copy_with(lambda n, a: a.astype(np.float16))


def lora_fp16_pair(base, size_mb):
    # A float16 deployment with a rank-16 adapter merged into every Gemm weight in float16.
    rng = np.random.default_rng(VARIANT_SEED["lora-fp16"] + size_mb)
    old = base.copy_with(lambda n, a: a.astype(np.float16))
    def merge(n, a):
        if not (n.endswith(".weight") and n.startswith("fc") and a.ndim == 2):
            return a
        r = 16
        b = rng.standard_normal((a.shape[0], r)).astype(np.float32) * float(a.std()) * 0.05
        lo = rng.standard_normal((r, a.shape[1])).astype(np.float32) * 0.05
        return (a + ((32.0 / r) * (b @ lo)).astype(np.float16)).astype(np.float16)
    return old, old.copy_with(merge)


def int8_model(floats):
    """Per-tensor int8 weights (+ scale, zero point) with DequantizeLinear; biases stay float."""
    m = Model()
    for kind, tensors, extra in floats.layers:
        (wn, w), (bn, b) = list(tensors.items())
        scale = max(float(np.abs(w).max()), 1e-12) / 127.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        m.layers.append((kind, {wn: q, bn: b, f"{wn}.scale": np.array(scale, np.float32),
                                f"{wn}.zero_point": np.array(0, np.int8)}, dict(extra, int8=True)))
    return m


def int8_pair(base, size_mb):
    # An int8-deployed model fine-tuned (full fine-tune, 1e-3 relative) and re-quantized with the
    # old scales, as quantization-aware fine-tuning does: some int8 codes move by one.
    old = int8_model(base)
    tuned = variant(base, "finetune-full", size_mb + VARIANT_SEED["int8-finetune"])
    new = Model()
    for (kind, t_old, extra), (_, t_tuned, _) in zip(old.layers, tuned.layers):
        (wn, _), (bn, _) = list(t_old.items())[:2]
        scale = float(t_old[f"{wn}.scale"])
        q = np.clip(np.round(t_tuned[wn] / scale), -127, 127).astype(np.int8)
        new.layers.append((kind, {wn: q, bn: t_tuned[bn], f"{wn}.scale": t_old[f"{wn}.scale"],
                                  f"{wn}.zero_point": t_old[f"{wn}.zero_point"]}, dict(extra)))
    return old, new


def save(proto, path):
    onnx.checker.check_model(proto)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(proto.SerializeToString())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--sizes", default="2,20", help="model sizes in MB, comma separated")
    p.add_argument("--pairs", default=",".join(PAIRS), help="which pairs (default: all)")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    pairs = [s for s in args.pairs.split(",") if s]
    for s in pairs:
        if s not in PAIRS:
            sys.exit(f"unknown pair {s!r}; known: {', '.join(PAIRS)}")
    rows = []
    for size in sizes:
        base = base_model(size)
        base_path = os.path.join(args.out_dir, f"{size}mb", "base.onnx")
        save(to_onnx(base, f"bench{size}"), base_path)
        for pair in pairs:
            d = os.path.join(args.out_dir, f"{size}mb", pair)
            own_base = {"int8-finetune": int8_pair, "fp16-finetune": fp16_pair,
                        "lora-fp16": lora_fp16_pair, "head-retrain": head_retrain_pair}
            if pair in own_base:
                old, new = own_base[pair](base, size)
                save(to_onnx(old, f"bench{size}"), os.path.join(d, "old.onnx"))
                old_path = os.path.join(d, "old.onnx")
            else:
                new = variant(base, pair, size)
                old_path = base_path
            new_path = os.path.join(d, "new.onnx")
            save(to_onnx(new, f"bench{size}"), new_path)
            rows.append([pair, size, os.path.relpath(old_path, args.out_dir),
                         os.path.relpath(new_path, args.out_dir)])
            print(f"{size:>4} MB  {pair:<17} old {os.path.getsize(old_path):>11,} B  "
                  f"new {os.path.getsize(new_path):>11,} B", flush=True)
    with open(os.path.join(args.out_dir, "pairs.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pair", "size_mb", "old", "new"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
