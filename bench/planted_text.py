#!/usr/bin/env python3
"""A text with planted dependencies at a known distance, and the mask of the planted bytes.

    bench/planted_text.py OUT --distance D [--task copy|recall] [--bytes N] [--seed S] [--period 12]

Writes OUT.txt and OUT.mask (one byte per text byte: 1 where a byte is planted, else 0). The text is
random letters a-p (4 bits each, nothing to learn) except, every --period bytes:
  copy    a cue '#' followed by a copy of the byte D positions back: predicting it (4 bits -> 0)
          needs attention at exactly distance D (a positional lookup).
  recall  a key byte K (one of 128 bytes >= 0x80) followed by the letter that followed K's previous
          occurrence, D bytes earlier (associative recall, as induction heads do it): the answer is
          found by content, but only within a span of at least D. No key recurs within 3·D bytes
          other than as its own pair, so the earlier occurrence is unambiguous.
With period 12 the planted bytes sit at positions = 8 mod 12 for D = 64, 256, 1024, 4096: never a cue,
key or another planted byte, so no shorter way to the answer exists.
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
    parser.add_argument("--task", choices=("copy", "recall"), default="copy")
    args = parser.parse_args()
    if args.distance < 2 or args.distance % args.period in (0, 1, args.period - 1):
        parser.error("--distance must not land on a cue, key or planted byte (distance mod period not in {0, 1, period-1})")
    rng = random.Random(args.seed)
    text = bytearray(rng.choice(b"abcdefghijklmnop") for _ in range(args.bytes))
    mask = bytearray(args.bytes)
    last_use = {}  # key byte -> last position it was written at
    for p in range(args.distance + args.period, args.bytes, args.period):
        if args.task == "copy":
            text[p - 1] = ord("#")
        else:
            free = [k for k in range(0x80, 0x100) if last_use.get(k, -(1 << 62)) < p - 1 - 3 * args.distance]
            if not free:
                parser.error(f"--task recall: 128 keys do not cover distance {args.distance} at period {args.period}; "
                             "use a longer --period")
            key = rng.choice(free)
            text[p - args.distance - 1] = key
            text[p - 1] = key
            last_use[key] = p - 1
        text[p] = text[p - args.distance]
        mask[p] = 1
    with open(args.out + ".txt", "wb") as f:
        f.write(text)
    with open(args.out + ".mask", "wb") as f:
        f.write(mask)


if __name__ == "__main__":
    main()
