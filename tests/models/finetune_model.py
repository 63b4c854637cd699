#!/usr/bin/python3
"""Writes a "fine-tuned" copy of an ONNX model: every float32 initializer with more than
--min-size elements is scaled by (1 + N(0, --scale)), as a short fine-tune would move them.
Used to make realistic version pairs for differential-update tests.

usage: finetune_model.py IN OUT [--scale 1e-3] [--seed 1] [--min-size 1000]
"""
import argparse

import numpy as np
import onnx
from onnx import numpy_helper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--scale", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-size", type=int, default=1000)
    args = parser.parse_args()

    model = onnx.load(args.input)
    rng = np.random.default_rng(args.seed)
    changed = 0
    for init in model.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.dtype != np.float32 or weights.size <= args.min_size:
            continue
        tuned = weights * (1 + rng.normal(0, args.scale, weights.shape)).astype(np.float32)
        init.CopyFrom(numpy_helper.from_array(tuned.astype(np.float32), init.name))
        changed += 1
    if changed == 0:
        raise SystemExit(f"{args.input}: no float32 initializer larger than {args.min_size}")
    onnx.save(model, args.output)


if __name__ == "__main__":
    main()
