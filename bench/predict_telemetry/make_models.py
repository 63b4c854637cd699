#!/usr/bin/env python3
"""Writes the image model of bench/predict_telemetry into OUTDIR: image224.onnx, a small image
classifier (input "image" [1,3,224,224] -> Conv 3->16 3x3 stride 2 -> Relu -> GlobalAveragePool
-> Gemm -> Softmax, output "probs" [1,10]). The 4-feature vector model is the test suite's
classifier_v1.onnx (tests/models/make_models.py). Run with /usr/bin/python3 (python3-onnx)."""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper, save


def make_image224(seed):
    rng = np.random.default_rng(seed)
    wc = rng.normal(0.0, 0.3, size=(16, 3, 3, 3)).astype(np.float32)
    bc = rng.normal(0.0, 0.1, size=(16,)).astype(np.float32)
    wf = rng.normal(0.0, 1.0, size=(10, 16)).astype(np.float32)
    bf = rng.normal(0.0, 0.1, size=(10,)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "wc", "bc"], ["conv"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["scores"], transB=1),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "image224",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(wc, "wc"), numpy_helper.from_array(bc, "bc"),
                     numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(bf, "bf")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 7  # opset 11, IR 7: what OpenCV DNN 4.6 loads
    return model


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: make_models.py OUTDIR")
    os.makedirs(argv[1], exist_ok=True)
    save(make_image224(seed=2024), os.path.join(argv[1], "image224.onnx"))


if __name__ == "__main__":
    main(sys.argv)
