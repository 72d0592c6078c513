#!/usr/bin/env python3
"""Checks that each folder includes only what the architecture's arrows allow.

    scripts/check_layering.py SOURCE_DIR                 # the include rules
    scripts/check_layering.py --nm LIB...                # those libraries call no MPI, HDF5 or NCCL

Include rules (`#include "folder/..."`), besides a folder's own headers:
    launcher -> trainer, checkpointing, cluster, data, model
    trainer  -> model, data, checkpointing, cluster, kernels
    model    -> kernels
    checkpointing -> cluster (the opaque communicator and its MPI bridge)
    cluster  -> model/process_group.h (the interface it implements)
    kernels, data -> nothing of ours
Third-party headers: <mpi.h> only in cluster/ (and in headers only in cluster/mpi_communicator.h,
which only .cpp files include); <hdf5.h> only in checkpointing/*.cpp; <nccl.h> only in cluster/*.cpp.
Exit status 1 with one line per violation.
"""
import os
import re
import subprocess
import sys

FOLDERS = ["launcher", "trainer", "model", "kernels", "data", "checkpointing", "cluster"]
ALLOWED = {
    "launcher": {"trainer", "checkpointing", "cluster", "data", "model"},
    "trainer": {"model", "data", "checkpointing", "cluster", "kernels"},
    "model": {"kernels"},
    "checkpointing": {"cluster"},
    "cluster": set(),
    "kernels": set(),
    "data": set(),
}
ALLOWED_FILES = {"cluster": {"model/process_group.h"}}
OURS = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/([^"]+)"')
SYSTEM = re.compile(r'^\s*#\s*include\s+<([^>]+)>')


def sources(root, folder):
    """(path relative to root, file name) of the folder's C++ files, subfolders included."""
    for base, _, files in sorted(os.walk(os.path.join(root, folder))):
        for name in sorted(files):
            if name.endswith((".h", ".cpp", ".cu")):
                yield os.path.relpath(os.path.join(base, name), root), name


def violations(root):
    for folder in FOLDERS:
        for path, name in sources(root, folder):
            header = name.endswith(".h")
            for number, line in enumerate(open(os.path.join(root, path)), 1):
                where = f"{path}:{number}"
                m = OURS.match(line)
                if m:
                    target, file = m.group(1), f"{m.group(1)}/{m.group(2)}"
                    if target != folder and target in ALLOWED and target not in ALLOWED[folder] \
                            and file not in ALLOWED_FILES.get(folder, set()):
                        yield f"{where}: {folder}/ may not include {file}"
                    if file == "cluster/mpi_communicator.h" and header and folder != "cluster":
                        yield f"{where}: a header outside cluster/ includes cluster/mpi_communicator.h (<mpi.h>)"
                    continue
                m = SYSTEM.match(line)
                if not m:
                    continue
                lib = m.group(1)
                if lib == "mpi.h" and (folder != "cluster" or (header and name != "mpi_communicator.h")):
                    yield f"{where}: <mpi.h> outside cluster/mpi_communicator.h and cluster/*.cpp"
                if lib.startswith(("hdf5", "H5")) and (folder != "checkpointing" or header):
                    yield f"{where}: <{lib}> outside checkpointing/*.cpp"
                if lib == "nccl.h" and (folder != "cluster" or header):
                    yield f"{where}: <nccl.h> outside cluster/*.cpp"


def foreign_symbols(libraries):
    """Undefined MPI/HDF5/NCCL symbols each static library needs: none for model and kernels."""
    pattern = re.compile(r"^\s*U\s+((MPI|PMPI|ompi|H5|nccl)\w*)")
    for lib in libraries:
        out = subprocess.run(["nm", lib], capture_output=True, text=True, check=True).stdout
        names = sorted({m.group(1) for m in map(pattern.match, out.splitlines()) if m})
        for name in names:
            yield f"{os.path.basename(lib)} needs {name}"


def main(argv):
    if argv[:1] == ["--nm"] and len(argv) >= 2:
        found = list(foreign_symbols(argv[1:]))
    elif len(argv) == 1:
        found = list(violations(argv[0]))
    else:
        sys.exit(__doc__)
    for line in found:
        print(line)
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
