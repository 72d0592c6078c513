#!/usr/bin/env python3
"""Lists the functions longer than LIMIT lines (default 80) in the C++ sources; exit 1 if any.

    scripts/long_functions.py [--limit N] SOURCE_DIR

A function here is a block that opens with `{` at the end of a line at column 0 or 2 (free
functions and members defined in namespaces or classes) and closes at the same indentation.
Declarative tables (functions named *_options or *_table, a list of option declarations) are
exempt: their length is one line per option, which is their point.
"""
import os
import re
import sys

FOLDERS = ["launcher", "trainer", "model", "kernels", "data", "checkpointing", "cluster", "bench", "tests"]
SIGNATURE = re.compile(r"^( {0,2})\S.*\)\s*(const\s*)?(override\s*)?(noexcept\s*)?(->\s*[\w:<>&* ]+)?\{\s*$")
NAME = re.compile(r"([\w:~]+)\s*\(")
EXEMPT = re.compile(r"_(options|table)$")


def long_functions(root, limit):
    for folder in FOLDERS:
        for base, _, files in os.walk(os.path.join(root, folder)):
            for name in sorted(files):
                if not name.endswith((".cpp", ".h", ".cu")):
                    continue
                path = os.path.join(base, name)
                lines = open(path, errors="replace").read().split("\n")
                i = 0
                while i < len(lines):
                    m = SIGNATURE.match(lines[i])
                    if not m or lines[i].lstrip().startswith(("namespace", "struct", "class", "enum", "extern", "#")):
                        i += 1
                        continue
                    indent = m.group(1)
                    end = i + 1
                    while end < len(lines) and not lines[end].startswith(indent + "}"):
                        end += 1
                    length = end - i + 1
                    called = NAME.search(lines[i])
                    function = called.group(1) if called else lines[i].strip()
                    if length > limit and not EXEMPT.search(function.split("::")[-1]):
                        yield f"{os.path.relpath(path, root)}:{i + 1}: {function} is {length} lines"
                    i = end + 1


def main(argv):
    limit = 80
    if argv[:1] == ["--limit"]:
        limit, argv = int(argv[1]), argv[2:]
    if len(argv) != 1:
        sys.exit(__doc__)
    found = list(long_functions(argv[0], limit))
    for line in found:
        print(line)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
