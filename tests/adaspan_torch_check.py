#!/usr/bin/env python3
"""python/adaspan_torch.py against `adaspan eval --logprobs`: the same per-byte log-probabilities.

usage: adaspan_torch_check.py CHECKPOINT DATA BATCH_SIZE BLOCK_SIZE [ADASPAN_BINARY] [--tolerance T]

The binary defaults to $ADASPAN. Prints the largest absolute difference over the predicted bytes;
exit 0 when it is <= the tolerance (1e-5) and both predict the same bytes, 1 otherwise, 2 on bad usage.
"""

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "python"))
import adaspan_torch  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("batch_size", type=int)
    parser.add_argument("block_size", type=int)
    parser.add_argument("binary", nargs="?", default=os.environ.get("ADASPAN"))
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    if not args.binary:
        parser.error("no adaspan binary: give its path or set ADASPAN")

    with tempfile.TemporaryDirectory(prefix="adaspan_torch_check_") as tmp:
        out = os.path.join(tmp, "logprobs.bin")
        command = [args.binary, "eval", "--checkpoint", args.checkpoint, "--data", args.data, "--batch-size",
                   str(args.batch_size), "--block-size", str(args.block_size), "--threads", "1", "--logprobs", out]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"adaspan eval failed (status {run.returncode}): {run.stderr.strip()}")
            return 1
        expected = np.fromfile(out, dtype="<f4")

    model = adaspan_torch.load(args.checkpoint)
    with open(args.data, "rb") as f:
        got = adaspan_torch.evaluate_logprobs(model, f.read(), args.batch_size, args.block_size)

    if got.shape != expected.shape:
        print(f"FAIL: {got.size} log-probs from python, {expected.size} from adaspan eval")
        return 1
    predicted = ~np.isnan(expected)
    if not np.array_equal(predicted, ~np.isnan(got)):
        print(f"FAIL: python predicts other bytes ({int((~np.isnan(got)).sum())}) than adaspan eval "
              f"({int(predicted.sum())})")
        return 1
    diff = np.abs(got[predicted].astype(np.float64) - expected[predicted].astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    ok = bool(np.isfinite(worst)) and worst <= args.tolerance
    cfg = model.cfg
    print(f"{'ok' if ok else 'FAIL'}: max abs difference {worst:.3e} over {int(predicted.sum())} bytes "
          f"(tolerance {args.tolerance:g}; {cfg['attention']}, span-mode {cfg['span-mode']}, "
          f"normalizer {cfg['normalizer']}, cache {cfg['cache']}; B {args.batch_size}, M {args.block_size})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
