#!/usr/bin/python3
"""Writes small, deterministic ONNX test models and their numpy-computed expected outputs.

Usage: make_models.py OUTDIR [--size-mb N]

OUTDIR receives classifier_v1.onnx, classifier_v2.onnx, classifier_same.onnx (v1's answers, another
file), classifier_slow.onnx (v1's answers, about 10x its inference time), conv_v1.onnx, classifier_nan.onnx (finite
for warm-up's zeros, NaN for the sample input; not in expected.*), broken.onnx (truncated),
unloadable.onnx (well-formed, with an operator no runtime has) and expected.json
({"models": {FILE: {"inputs": [...], "outputs": [...]}}, "broken": [FILE]}), each tensor as {"name", "shape", "data"}. expected.txt holds the same tensors for parsers
without JSON, one per line: "FILE input|output NAME D1,D2,... V1 V2 ...". With --size-mb N it also writes classifier_large.onnx,
a classifier with a hidden layer big enough that the file is about N MiB (benchmarks, demo).

Models use opset 11 and IR version 7 so that OpenCV DNN 4.6 loads them.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 11
IR_VERSION = 7
# The slow classifier's dead branch: layers of this many units.
SLOW_WIDTH = 1024
SLOW_LAYERS = 3
SAMPLE_FEATURES = np.array([[0.5, -1.2, 3.3, 0.7]], dtype=np.float32)


def _finish(graph, name):
    model = helper.make_model(graph, producer_name="edgefleet-make-models",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    model.doc_string = name
    onnx.checker.check_model(model)
    return model


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_classifier(seed, hidden, name=None):
    """input [1,4] -> Gemm -> Relu -> Gemm -> Softmax -> probs [1,3]; weights are [out, in]."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 1.0, size=(hidden, 4)).astype(np.float32)
    b1 = rng.normal(0.0, 0.5, size=(hidden,)).astype(np.float32)
    # Scale the second layer so that the logits stay in a range where softmax is not saturated.
    w2 = (rng.normal(0.0, 1.0, size=(3, hidden)) / np.sqrt(hidden)).astype(np.float32)
    b2 = rng.normal(0.0, 0.5, size=(3,)).astype(np.float32)

    nodes = [
        helper.make_node("Gemm", ["input", "w1", "b1"], ["hidden"], transB=1),
        helper.make_node("Relu", ["hidden"], ["hidden_relu"]),
        helper.make_node("Gemm", ["hidden_relu", "w2", "b2"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, f"classifier_seed{seed}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1"),
                     numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")])

    x = SAMPLE_FEATURES.astype(np.float64)
    h = np.maximum(x @ w1.T.astype(np.float64) + b1, 0.0)
    probs = _softmax(h @ w2.T.astype(np.float64) + b2)
    return (_finish(graph, name or f"classifier seed {seed}"), {"input": SAMPLE_FEATURES},
            {"probs": probs})


def make_slow_classifier(seed, hidden, busy_width, busy_layers):
    """make_classifier(seed, hidden)'s answers from a much slower graph: besides the classifier, a
    dead branch of `busy_layers` Gemm+Relu layers of `busy_width` units whose result is multiplied
    by zero and added to the logits (x * 0 + logits == logits exactly for finite x). Same inputs,
    outputs and answers; many times the compute (the inference gates' slow version)."""
    model, inputs, outputs = make_classifier(seed, hidden)
    graph = model.graph
    rng = np.random.default_rng(seed + 1)
    width_in = 4
    previous = "input"
    for layer in range(busy_layers):
        w = (rng.normal(0.0, 1.0, size=(busy_width, width_in)) / np.sqrt(width_in)).astype(np.float32)
        b = np.zeros((busy_width,), dtype=np.float32)
        graph.initializer.extend([numpy_helper.from_array(w, f"busy_w{layer}"),
                                  numpy_helper.from_array(b, f"busy_b{layer}")])
        graph.node.extend([
            helper.make_node("Gemm", [previous, f"busy_w{layer}", f"busy_b{layer}"],
                             [f"busy_h{layer}"], transB=1),
            helper.make_node("Relu", [f"busy_h{layer}"], [f"busy_r{layer}"])])
        previous = f"busy_r{layer}"
        width_in = busy_width
    w_out = (rng.normal(0.0, 1.0, size=(3, width_in)) / np.sqrt(width_in)).astype(np.float32)
    graph.initializer.extend([numpy_helper.from_array(w_out, "busy_wout"),
                              numpy_helper.from_array(np.zeros((3,), dtype=np.float32), "busy_bout"),
                              numpy_helper.from_array(np.zeros((3,), dtype=np.float32), "zero")])
    # The classifier's Softmax reads "logits": rename its producer's output and add the branch.
    softmax = [n for n in graph.node if n.op_type == "Softmax"][0]
    producer = [n for n in graph.node if "logits" in n.output][0]
    producer.output[0] = "plain_logits"
    graph.node.extend([
        helper.make_node("Gemm", [previous, "busy_wout", "busy_bout"], ["busy_scores"], transB=1),
        helper.make_node("Mul", ["busy_scores", "zero"], ["busy_zero"]),
        helper.make_node("Add", ["plain_logits", "busy_zero"], ["logits"])])
    # Nodes must be in topological order: move the Softmax last.
    nodes = [n for n in graph.node if n is not softmax] + [softmax]
    del graph.node[:]
    graph.node.extend(nodes)
    model.doc_string = f"slow classifier seed {seed}"
    onnx.checker.check_model(model)
    return model, inputs, outputs


def _conv2d_same(image, weights, bias):
    """NCHW convolution, stride 1, zero padding 1, 3x3 kernels, one batch."""
    _, c_in, h, w = image.shape
    c_out = weights.shape[0]
    padded = np.pad(image[0], ((0, 0), (1, 1), (1, 1)))
    out = np.zeros((1, c_out, h, w))
    for o in range(c_out):
        for y in range(h):
            for x in range(w):
                out[0, o, y, x] = np.sum(padded[:, y:y + 3, x:x + 3] * weights[o]) + bias[o]
    return out


def make_conv(seed):
    """image [1,1,8,8] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> scores [1,2]."""
    rng = np.random.default_rng(seed)
    wc = rng.normal(0.0, 0.5, size=(4, 1, 3, 3)).astype(np.float32)
    bc = rng.normal(0.0, 0.1, size=(4,)).astype(np.float32)
    wf = rng.normal(0.0, 1.0, size=(2, 4)).astype(np.float32)
    bf = rng.normal(0.0, 0.1, size=(2,)).astype(np.float32)

    nodes = [
        helper.make_node("Conv", ["image", "wc", "bc"], ["conv"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["conv"], ["conv_relu"]),
        helper.make_node("GlobalAveragePool", ["conv_relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["scores"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "conv_v1",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2])],
        initializer=[numpy_helper.from_array(wc, "wc"), numpy_helper.from_array(bc, "bc"),
                     numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(bf, "bf")])

    # A diagonal gradient with a bright square: varied enough to exercise padding and Relu.
    image = np.fromfunction(lambda n, c, y, x: (x - y) / 8.0, (1, 1, 8, 8)).astype(np.float32)
    image[0, 0, 2:5, 3:6] += 1.5
    conv = np.maximum(_conv2d_same(image.astype(np.float64), wc.astype(np.float64), bc), 0.0)
    pooled = conv.mean(axis=(2, 3))
    scores = pooled @ wf.T.astype(np.float64) + bf
    return _finish(graph, "conv v1"), {"image": image}, {"scores": scores}


def make_nan_on_traffic(seed):
    """A classifier-shaped model that passes warm-up but answers NaN for real inputs:
    input [1,4] -> Gemm (no bias) -> Abs -> Mul(-1) -> Sqrt -> probs [1,3]. Warm-up feeds zeros,
    giving sqrt(-0) = 0 (finite); any input with a non-zero projection gives sqrt of a negative."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.0, size=(3, 4)).astype(np.float32)
    b = np.zeros((3,), dtype=np.float32)
    minus_one = np.array([-1.0], dtype=np.float32)
    nodes = [
        helper.make_node("Gemm", ["input", "w", "b"], ["projected"], transB=1),
        helper.make_node("Abs", ["projected"], ["magnitude"]),
        helper.make_node("Mul", ["magnitude", "minus_one"], ["negative"]),
        helper.make_node("Sqrt", ["negative"], ["probs"]),
    ]
    graph = helper.make_graph(
        nodes, "classifier_nan_on_traffic",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
                     numpy_helper.from_array(minus_one, "minus_one")])
    projected = SAMPLE_FEATURES.astype(np.float64) @ w.T.astype(np.float64)
    if not np.all(np.abs(projected) > 1e-3):
        sys.exit("the NaN model's projection of the sample input must be non-zero")
    return _finish(graph, "classifier that answers NaN")


def _tensor_json(name, array):
    return {"name": name, "shape": list(array.shape),
            "data": [float(np.float32(v)) for v in array.reshape(-1)]}


def write_expected(outdir, stem, built, broken=None):
    """Writes STEM.json and STEM.txt (the formats of the module docstring) for `built`:
    {FILE: (model, {input name: array}, {output name: array})}."""
    expected = {"models": {}}
    if broken is not None:
        expected["broken"] = broken
    lines = []
    for filename, (_, inputs, outputs) in built.items():
        expected["models"][filename] = {
            "inputs": [_tensor_json(n, a) for n, a in inputs.items()],
            "outputs": [_tensor_json(n, a) for n, a in outputs.items()],
        }
        for kind, tensors in (("input", inputs), ("output", outputs)):
            for n, a in tensors.items():
                t = _tensor_json(n, a)
                lines.append(" ".join([filename, kind, n, ",".join(map(str, t["shape"]))] +
                                      [repr(v) for v in t["data"]]))
    with open(os.path.join(outdir, stem + ".json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    with open(os.path.join(outdir, stem + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--size-mb", type=float, default=0,
                        help="also write classifier_large.onnx of about this many MiB")
    args = parser.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)

    built = {
        "classifier_v1.onnx": make_classifier(seed=101, hidden=16),
        "classifier_v2.onnx": make_classifier(seed=202, hidden=16),
        "conv_v1.onnx": make_conv(seed=303),
        # The inference gates' versions: v1's answers at v1's cost (another artifact), and v1's
        # answers at about ten times its cost in the agent (tests/integration/inference_gate_test).
        "classifier_same.onnx": make_classifier(seed=101, hidden=16, name="classifier v1 again"),
        "classifier_slow.onnx": make_slow_classifier(seed=101, hidden=16, busy_width=SLOW_WIDTH,
                                                     busy_layers=SLOW_LAYERS),
    }
    if args.size_mb > 0:
        # w1 [H,4] + b1 [H] + w2 [3,H] float32: 32 bytes per hidden unit.
        hidden = max(16, int(args.size_mb * 1024 * 1024 / 32))
        built["classifier_large.onnx"] = make_classifier(seed=404, hidden=hidden)

    # v1 -> v2 must be a visible change of behaviour for the hot-swap and rollout tests.
    p1 = built["classifier_v1.onnx"][2]["probs"]
    p2 = built["classifier_v2.onnx"][2]["probs"]
    if np.argmax(p1) == np.argmax(p2) or np.max(np.abs(p1 - p2)) < 0.2:
        sys.exit(f"classifier v1 and v2 answers are too similar: {p1} vs {p2}")

    for filename, (model, _, _) in built.items():
        onnx.save(model, os.path.join(args.outdir, filename))

    # A truncated model: the protobuf ends in the middle of the weights.
    good = built["classifier_v2.onnx"][0].SerializeToString()
    broken = good[:len(good) // 2]
    try:
        onnx.load_model_from_string(broken)
    except Exception:  # noqa: BLE001 - any parse failure is what we want
        pass
    else:
        sys.exit("truncated model unexpectedly parses")
    with open(os.path.join(args.outdir, "broken.onnx"), "wb") as f:
        f.write(broken)

    # A well-formed model the server accepts (valid protobuf, the classifier's inputs and
    # outputs) that no runtime loads: its only node is an operator that does not exist.
    graph = helper.make_graph(
        [helper.make_node("EdgefleetNoSuchOp", ["input"], ["probs"])], "unloadable",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 3])])
    unloadable = helper.make_model(graph, producer_name="edgefleet-make-models",
                                   opset_imports=[helper.make_opsetid("", OPSET)])
    unloadable.ir_version = IR_VERSION
    onnx.save(unloadable, os.path.join(args.outdir, "unloadable.onnx"))

    # Not in expected.*: its answer is NaN by design, which the expected files' parsers refuse.
    onnx.save(make_nan_on_traffic(seed=505), os.path.join(args.outdir, "classifier_nan.onnx"))

    write_expected(args.outdir, "expected", built, broken=["broken.onnx", "unloadable.onnx"])


if __name__ == "__main__":
    main(sys.argv[1:])
