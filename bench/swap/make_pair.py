#!/usr/bin/python3
"""Writes the two ONNX models bench/swap swaps between.

Usage: make_pair.py OUTDIR [--size-mb N]

OUTDIR receives swap_a.onnx and swap_b.onnx: the test suite's classifier (input [1,4] -> Gemm ->
Relu -> Gemm -> Softmax -> probs [1,3], opset 11 so that OpenCV DNN 4.6 loads it), with a hidden
layer wide enough that each file is about N MiB. Same inputs and outputs, different weights
(seeds 1001 and 1002), so every answer tells which version computed it.
"""

import argparse
import os
import sys

import onnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "models"))
from make_models import make_classifier  # noqa: E402


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir")
    parser.add_argument("--size-mb", type=float, default=8,
                        help="size of each model in MiB (default 8)")
    args = parser.parse_args(argv)
    os.makedirs(args.outdir, exist_ok=True)
    # w1 [H,4] + b1 [H] + w2 [3,H] float32: 32 bytes per hidden unit.
    hidden = max(16, int(args.size_mb * 1024 * 1024 / 32))
    for name, seed in (("swap_a.onnx", 1001), ("swap_b.onnx", 1002)):
        model, _, _ = make_classifier(seed=seed, hidden=hidden)
        path = os.path.join(args.outdir, name)
        onnx.save(model, path)
        print(f"{path}: {os.path.getsize(path)} bytes, hidden={hidden}")


if __name__ == "__main__":
    main(sys.argv[1:])
