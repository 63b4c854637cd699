#!/usr/bin/python3
"""Estimates how small any patch between two ONNX models can be, from the weights alone.

For every pair of same-named initializers it measures the entropy of the change given the old
weight: the difference in units in the last place (floats) or in codes (integers), coded
separately for each context of the old value (floats: exponent and top three mantissa bits;
integers: the code). Wide changes (float32 fine-tunes move weights by thousands of ulps) would
make nearly every value unique and the measured entropy meaningless, so their low bits, below a
quarter of the change's spread, are counted as incompressible and only the rest is measured.
The benchmark's pairs change weights by independent noise, so positions carry no further
information and this is close to the information any codec must send for them. Structure
(graph, names, shapes) is ignored, so the true minimum is a little higher.

Usage: /usr/bin/python3 bench/delta/entropy_bound.py OLD.onnx NEW.onnx [--peer BYTES]
With --peer (the best peer tool's patch size), also prints the 0.7x target next to the bound.
"""

import argparse

import numpy as np
import onnx
from onnx import numpy_helper


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def entropy_bytes(values):
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum()) / 8


def conditional_entropy_bytes(values, context):
    order = np.argsort(context, kind="stable")
    values, context = values[order], context[order]
    cuts = np.flatnonzero(np.diff(context)) + 1
    return sum(entropy_bytes(part) for part in np.split(values, cuts))


def ordered(bits, sign_bit):
    """IEEE-754 bit patterns as integers in value order, so differences count ulps."""
    magnitude = bits & (sign_bit - 1)
    return np.where(bits & sign_bit, -magnitude, magnitude)


def change_and_context(old, new):
    if old.dtype in (np.float32, np.float16):
        wide, mantissa = (np.int64, 23) if old.dtype == np.float32 else (np.int32, 10)
        unsigned = np.uint32 if old.dtype == np.float32 else np.uint16
        o = old.view(unsigned).astype(wide).ravel()
        n = new.view(unsigned).astype(wide).ravel()
        sign_bit = wide(1) << (8 * old.itemsize - 1)
        change = ordered(n, sign_bit) - ordered(o, sign_bit)
        context = (o & (sign_bit - 1)) >> (mantissa - 3)  # exponent and top 3 mantissa bits
        return change, context
    o = old.astype(np.int64).ravel()
    return new.astype(np.int64).ravel() - o, o


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--peer", type=int, help="best peer patch size in bytes")
    args = p.parse_args()
    old, new = initializers(args.old), initializers(args.new)
    rows = {}
    for name, a in old.items():
        b = new.get(name)
        if b is None or b.shape != a.shape or b.dtype != a.dtype:
            continue
        change, context = change_and_context(a, b)
        low_bits = max(0, int(np.log2(float(np.std(change)) + 1)) - 2)
        high = change >> low_bits
        row = rows.setdefault(str(a.dtype), [0, 0, 0.0, 0.0])
        row[0] += change.size
        row[1] += int(np.count_nonzero(change))
        row[2] += entropy_bytes(high) + change.size * low_bits / 8
        row[3] += conditional_entropy_bytes(high, context) + change.size * low_bits / 8
    print(f"{'dtype':<8} {'weights':>10} {'changed':>10} {'H(change)':>12} {'H(change|old)':>14}")
    total = 0.0
    for dtype, (n, changed, h0, h1) in sorted(rows.items()):
        total += h1
        print(f"{dtype:<8} {n:>10,} {changed:>10,} {h0:>12,.0f} {h1:>14,.0f}")
    print(f"estimated minimum patch: {total:,.0f} bytes")
    if args.peer:
        print(f"best peer {args.peer:,} bytes; 0.7x target {0.7 * args.peer:,.0f} bytes; "
              f"minimum / peer = {total / args.peer:.3f}x")


if __name__ == "__main__":
    main()
