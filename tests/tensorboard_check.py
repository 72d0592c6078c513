#!/usr/bin/env python3
"""Reads back the TensorBoard event files in DIR with tensorboard's own reader (EventAccumulator)
and prints them as one JSON object, for tests/report_test.cpp to compare with metrics.jsonl:

    {"files": [event file names], "scalars": {tag: [[step, value], ...]},
     "histograms": {tag: [[step, count, min, max], ...]}, "images": {tag: [[step, width, height], ...]}}

    tests/tensorboard_check.py DIR

Exit 1 with one line when tensorboard is missing or DIR holds no event file.
"""
import json
import os
import sys


def main(argv):
    if len(argv) != 1:
        sys.exit(__doc__)
    directory = argv[0]
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        sys.exit("tensorboard_check: python3 lacks tensorboard")
    files = sorted(name for name in os.listdir(directory) if "tfevents" in name) if os.path.isdir(directory) else []
    if not files:
        sys.exit(f"tensorboard_check: no event files in '{directory}'")
    keep_all = {event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0, event_accumulator.IMAGES: 0}
    acc = event_accumulator.EventAccumulator(directory, size_guidance=keep_all)
    acc.Reload()
    tags = acc.Tags()
    out = {
        "files": files,
        "scalars": {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags["scalars"]},
        "histograms": {
            tag: [[e.step, e.histogram_value.num, e.histogram_value.min, e.histogram_value.max]
                  for e in acc.Histograms(tag)]
            for tag in tags["histograms"]
        },
        "images": {tag: [[e.step, e.width, e.height] for e in acc.Images(tag)] for tag in tags["images"]},
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
