#!/usr/bin/env python3
"""Lists the functions longer than LIMIT lines (default 80) in the C++ sources; exit 1 if any.

    scripts/long_functions.py [--limit N] SOURCE_DIR

A function is a `{ ... }` body opened in namespace or class scope after a `)` (its signature,
from the end of the previous declaration); its length runs from the signature's first line to the
closing brace. Comments and string literals are ignored. Declarative tables (functions named
*_options or *_table: a list of option declarations, one line per option) are exempt.
"""
import os
import re
import sys

FOLDERS = ["launcher", "trainer", "model", "kernels", "data", "checkpointing", "cluster", "bench", "tests"]
SCOPE = re.compile(r"^(inline\s+)?(namespace|class|struct|enum|union|extern)\b")
TEMPLATE = re.compile(r"^template\s*<")
NAME = re.compile(r"([\w:~]+)\s*\(")
EXEMPT = re.compile(r"_(options|table)$")


def code_only(text):
    """The text with comments, string and character literals blanked (newlines kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"' and text.startswith('R"', i - 1):
            end = text.find(')"', i)
            j = n if end < 0 else end + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append(" ")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def without_preprocessor(text):
    """The text with preprocessor lines (and their backslash continuations) blanked."""
    lines, directive = text.split("\n"), False
    for i, l in enumerate(lines):
        if directive or l.lstrip().startswith("#"):
            directive = l.rstrip().endswith("\\")
            lines[i] = ""
    return "\n".join(lines)


def strip_template(header):
    """The declaration after a leading `template <...>` (angle brackets balanced)."""
    while TEMPLATE.match(header):
        depth, i = 0, header.index("<")
        for i in range(i, len(header)):
            depth += {"<": 1, ">": -1}.get(header[i], 0)
            if depth == 0:
                break
        header = header[i + 1:].strip()
    return header


def functions(path):
    """(name, first line, length) of every function body in namespace or class scope."""
    text = code_only(open(path, errors="replace").read())
    text = without_preprocessor(text)
    stack = []  # "scope" | "function" | "other", with the function's (name, first line)
    header, header_line, line = "", 1, 1
    for c in text:
        if c == "\n":
            line += 1
        if c == "{":
            in_scope = all(kind == "scope" for kind, _ in stack)
            h = strip_template(header.strip())
            after_calls = h[h.rfind(")") + 1:].strip()  # past macro calls such as FOO(x) without `;`
            if in_scope and (SCOPE.match(h) or SCOPE.match(after_calls)):
                stack.append(("scope", None))
            elif in_scope and ")" in h and not h.rstrip().endswith("=") and "= {" not in h:
                name = NAME.search(h)
                stack.append(("function", (name.group(1) if name else h[:40], header_line)))
            else:
                stack.append(("other", None))
            header, header_line = "", line
        elif c == "}":
            if stack:
                kind, info = stack.pop()
                if kind == "function":
                    yield info[0], info[1], line - info[1] + 1
            header, header_line = "", line
        elif c == ";":
            header, header_line = "", line
        else:
            if not header.strip() and not c.isspace():
                header_line = line
            header += c


def long_functions(root, limit):
    for folder in FOLDERS:
        for base, _, files in os.walk(os.path.join(root, folder)):
            for name in sorted(files):
                if not name.endswith((".cpp", ".h", ".cu")):
                    continue
                path = os.path.join(base, name)
                for function, first, length in functions(path):
                    if length > limit and not EXEMPT.search(function.split("::")[-1]):
                        yield f"{os.path.relpath(path, root)}:{first}: {function} is {length} lines"


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
