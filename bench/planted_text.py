#!/usr/bin/env python3
"""A text with planted dependencies at a known distance, and the mask of the planted bytes.

    bench/planted_text.py OUT --distance D [--bytes N] [--seed S] [--period 12]

Writes OUT.txt and OUT.mask (one byte per text byte: 1 where a byte is planted, else 0). The text is
random letters a-p (4 bits each, nothing to learn) except that every --period bytes a cue '#' is
followed by a copy of the byte D positions back: a model predicts the planted byte (4 bits -> 0) only
if it attends D bytes back. With period 12 the copied bytes sit at positions = 8 mod 12 for D = 64,
256, 1024, 4096: never a cue or another planted byte, so no shorter way to the answer exists.
"""
import argparse
import random


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--distance", type=int, required=True)
    parser.add_argument("--bytes", type=int, default=1 << 20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--period", type=int, default=12)
    args = parser.parse_args()
    if args.distance < 2 or args.distance % args.period in (0, args.period - 1):
        parser.error("--distance must not land on a cue or a planted byte (distance mod period not in {0, period-1})")
    rng = random.Random(args.seed)
    text = bytearray(rng.choice(b"abcdefghijklmnop") for _ in range(args.bytes))
    mask = bytearray(args.bytes)
    for p in range(args.distance + args.period, args.bytes, args.period):
        text[p - 1] = ord("#")
        text[p] = text[p - args.distance]
        mask[p] = 1
    with open(args.out + ".txt", "wb") as f:
        f.write(text)
    with open(args.out + ".mask", "wb") as f:
        f.write(mask)


if __name__ == "__main__":
    main()
