#!/usr/bin/python3
"""Writes the demo's image classifier: a small CNN of a few MB, in three versions, and its sample.

Usage: make_demo_models.py OUTDIR

OUTDIR receives
  vision_v1.onnx     image [1,3,32,32] -> 3 x (Conv 3x3 -> Relu -> MaxPool 2x2) -> Flatten ->
                     Gemm 1024x1024 -> Relu -> Gemm 1024x10 -> Softmax -> probs [1,10]; about
                     4.3 MB, nearly all of it the first dense layer.
  vision_v2.onnx     v1 fine-tuned: only the last layer (the 10-class head) has new weights, every
                     other tensor is byte-identical, so a patch from v1 is about 40 KB.
  vision_v3.onnx     v2 with a bad extra branch: loads and answers finite for the agent's warm-up
                     (zeros), but NaN for any other image, the way classifier_nan.onnx does.
  image_sample.npy   the image the demo's traffic sends (float32 [1,3,32,32], values in [0, 1]).
  vision_expected.json, vision_expected.txt
                     v1's and v2's answers to the sample as numpy computes them, in the formats of
                     make_models.py's expected.json and expected.txt (v3 is left out: NaN).

Deterministic (fixed seeds). Opset 11 and IR version 7, like make_models.py, so that OpenCV DNN 4.6
loads them.
"""

import argparse
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_models  # noqa: E402  - its conventions: _finish (opset, IR version), expected files

SIDE = 32
CLASSES = 10
# Three conv blocks, each halving the side, are light to run (about 3 M multiply-adds); nearly all
# of the file is the first dense layer's 1024 x 1024 weights (4 MiB).
CONV_CHANNELS = (3, 16, 32, 64)
HIDDEN = 1024
FLAT = CONV_CHANNELS[-1] * (SIDE // 8) ** 2  # 64 x 4 x 4 = 1024


def sample_image():
    """A deterministic 'photo': per-channel gradients, a bright square and a dark disc."""
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64) / (SIDE - 1)
    image = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.5 + 0.3 * (1 - x) * y])
    image[:, 6:14, 18:27] = [[[0.95]], [[0.85]], [[0.2]]]
    image[:, ((y - 0.7) ** 2 + (x - 0.3) ** 2) < 0.04] *= 0.25
    return image[np.newaxis].astype(np.float32)


def _conv3x3_same(image, weights, bias):
    """NCHW convolution of one image, stride 1, zero padding 1, 3x3 kernels (im2col)."""
    _, c_in, h, w = image.shape
    padded = np.pad(image[0], ((0, 0), (1, 1), (1, 1)))
    patches = np.stack([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)],
                       axis=1)  # [c_in, 9, h, w], matching weights [c_out, c_in, 3, 3]
    out = np.tensordot(weights.reshape(weights.shape[0], c_in, 9), patches, axes=([1, 2], [0, 1]))
    return (out + bias[:, None, None])[np.newaxis]


def _maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def _features(weights, image):
    """The network up to the head's input (the first dense layer's Relu), in float64."""
    x = image.astype(np.float64)
    for block in range(len(CONV_CHANNELS) - 1):
        x = _conv3x3_same(x, weights[f"conv{block}_w"].astype(np.float64),
                          weights[f"conv{block}_b"].astype(np.float64))
        x = _maxpool2(np.maximum(x, 0.0))
    flat = x.reshape(1, -1)
    return np.maximum(flat @ weights["fc1_w"].T.astype(np.float64) + weights["fc1_b"], 0.0)


def _probs(weights, image):
    hidden = _features(weights, image)
    return make_models._softmax(hidden @ weights["head_w"].T.astype(np.float64) + weights["head_b"])


def make_weights(seed, image):
    """He-initialised conv and dense layers; the head is scaled so that the sample's logits have a
    spread of about 2 (softmax neither flat nor saturated), as a trained head would give."""
    rng = np.random.default_rng(seed)
    weights = {}
    for block in range(len(CONV_CHANNELS) - 1):
        c_in, c_out = CONV_CHANNELS[block], CONV_CHANNELS[block + 1]
        weights[f"conv{block}_w"] = rng.normal(0.0, np.sqrt(2.0 / (9 * c_in)),
                                               size=(c_out, c_in, 3, 3)).astype(np.float32)
        weights[f"conv{block}_b"] = rng.normal(0.0, 0.01, size=(c_out,)).astype(np.float32)
    weights["fc1_w"] = rng.normal(0.0, np.sqrt(2.0 / FLAT), size=(HIDDEN, FLAT)).astype(np.float32)
    weights["fc1_b"] = rng.normal(0.0, 0.01, size=(HIDDEN,)).astype(np.float32)
    hidden = _features(weights, image)
    head = rng.normal(0.0, 1.0, size=(CLASSES, HIDDEN))
    head *= 2.0 / max(np.std(head @ hidden[0]), 1e-6)
    weights["head_w"] = head.astype(np.float32)
    weights["head_b"] = rng.normal(0.0, 0.1, size=(CLASSES,)).astype(np.float32)
    return weights


def fine_tune_head(weights, seed, image):
    """v1 with a new head: the last layer moved as a short fine-tune on new classes would move it;
    every other tensor stays the same array (the same bytes in the file)."""
    rng = np.random.default_rng(seed)
    tuned = dict(weights)
    head = weights["head_w"].astype(np.float64)
    tuned["head_w"] = (head + rng.normal(0.0, 0.5 * head.std(), size=head.shape)).astype(np.float32)
    tuned["head_b"] = (weights["head_b"] + rng.normal(0.0, 0.3, size=(CLASSES,))).astype(np.float32)
    # The demo shows v2 answering differently: another top class for the sample.
    p1, p2 = _probs(weights, image), _probs(tuned, image)
    if np.argmax(p1) == np.argmax(p2) or np.max(np.abs(p1 - p2)) < 0.2:
        sys.exit(f"vision v1 and v2 answers are too similar: {p1} vs {p2}")
    return tuned


def _cnn_nodes():
    nodes = []
    previous = "image"
    for block in range(len(CONV_CHANNELS) - 1):
        nodes += [
            helper.make_node("Conv", [previous, f"conv{block}_w", f"conv{block}_b"],
                             [f"conv{block}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                             strides=[1, 1]),
            helper.make_node("Relu", [f"conv{block}"], [f"relu{block}"]),
            helper.make_node("MaxPool", [f"relu{block}"], [f"pool{block}"], kernel_shape=[2, 2],
                             strides=[2, 2]),
        ]
        previous = f"pool{block}"
    return nodes + [
        helper.make_node("Flatten", [previous], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc1_w", "fc1_b"], ["fc1"], transB=1),
        helper.make_node("Relu", ["fc1"], ["fc1_relu"]),
        helper.make_node("Gemm", ["fc1_relu", "head_w", "head_b"], ["logits"], transB=1),
    ]


def make_cnn(weights, name, nan_on_traffic=False):
    """The graph over `weights`. With nan_on_traffic, probs = softmax + sqrt(-(mean |pixel| per
    channel, summed)): -0 for an all-zero image (warm-up), NaN for anything else."""
    nodes = _cnn_nodes()
    initializers = [numpy_helper.from_array(a, n) for n, a in weights.items()]
    if not nan_on_traffic:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    else:
        initializers += [
            numpy_helper.from_array(np.ones((CLASSES, 3), dtype=np.float32), "nan_w"),
            numpy_helper.from_array(np.zeros((CLASSES,), dtype=np.float32), "nan_b"),
            numpy_helper.from_array(np.array([-1.0], dtype=np.float32), "minus_one"),
        ]
        nodes += [
            helper.make_node("Softmax", ["logits"], ["softmax"], axis=1),
            helper.make_node("Abs", ["image"], ["magnitude"]),
            helper.make_node("GlobalAveragePool", ["magnitude"], ["channel_means"]),
            helper.make_node("Flatten", ["channel_means"], ["channel_flat"], axis=1),
            helper.make_node("Gemm", ["channel_flat", "nan_w", "nan_b"], ["brightness"], transB=1),
            helper.make_node("Mul", ["brightness", "minus_one"], ["negative"]),
            helper.make_node("Sqrt", ["negative"], ["nan_or_zero"]),
            helper.make_node("Add", ["softmax", "nan_or_zero"], ["probs"]),
        ]
    graph = helper.make_graph(
        nodes, name.replace(" ", "_"),
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, CLASSES])],
        initializer=initializers)
    return make_models._finish(graph, name)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    args = parser.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)

    image = sample_image()
    if not np.all(np.abs(image).mean(axis=(2, 3)) > 1e-3):
        sys.exit("the NaN model's branch needs a sample with non-zero channels")
    v1 = make_weights(seed=1001, image=image)
    v2 = fine_tune_head(v1, seed=2015, image=image)
    models = {
        "vision_v1.onnx": make_cnn(v1, "vision v1"),
        "vision_v2.onnx": make_cnn(v2, "vision v2 (head fine-tuned)"),
        "vision_v3.onnx": make_cnn(v2, "vision v3 (answers NaN)", nan_on_traffic=True),
    }
    for filename, model in models.items():
        with open(os.path.join(args.outdir, filename), "wb") as f:
            f.write(model.SerializeToString())
    np.save(os.path.join(args.outdir, "image_sample.npy"), image)
    make_models.write_expected(args.outdir, "vision_expected", {
        f: (models[f], {"image": image}, {"probs": _probs(w, image)})
        for f, w in (("vision_v1.onnx", v1), ("vision_v2.onnx", v2))})


if __name__ == "__main__":
    main(sys.argv[1:])
