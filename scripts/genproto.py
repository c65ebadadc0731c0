#!/usr/bin/env python3
"""Regenerate the committed protobuf/gRPC Python code of Starlock.

Two proto trees are compiled with ``grpc_tools.protoc``:

* ``libs/joinproto/src/starlock/joinproto/*.proto``: messages (``_pb2.py``), typing stubs
  (``_pb2.pyi``) and gRPC stubs (``_pb2_grpc.py``);
* ``libs/attestation/src/starlock/attestation/_proto/*.proto``: messages and typing stubs only
  (go-tpm-tools ``tpm`` and ``attest`` packages; no services).

Each tree's include root is its ``src/`` folder and every file is named to protoc by its path
below that root, so the generated imports read ``from starlock.joinproto import components_pb2``.

Usage::

    python scripts/genproto.py          # rewrite the generated files in place
    python scripts/genproto.py --check  # exit 1 if any committed file differs from a fresh run

The generated files are never edited by hand; run this script after changing a ``.proto``.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

REPO_ROOT = Path(__file__).resolve().parents[1]


class Tree:
    """One proto tree: include root, package folder below it, and whether to emit gRPC stubs."""

    def __init__(self, root: str, package: str, grpc: bool) -> None:
        self.root = REPO_ROOT / root
        self.package = package
        self.grpc = grpc

    @property
    def folder(self) -> Path:
        return self.root / self.package

    def protos(self) -> list[str]:
        return sorted(f"{self.package}/{p.name}" for p in self.folder.glob("*.proto"))


TREES = [
    Tree("libs/joinproto/src", "starlock/joinproto", grpc=True),
    Tree("libs/attestation/src", "starlock/attestation/_proto", grpc=False),
]

GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(tree: Tree, out_dir: Path) -> None:
    args = [
        "grpc_tools.protoc",
        f"-I{tree.root}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
    ]
    if tree.grpc:
        args.append(f"--grpc_python_out={out_dir}")
    args += tree.protos()
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed for {tree.folder}")


def generated_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    opts = parser.parse_args(argv)

    stale: list[str] = []
    for tree in TREES:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tree, Path(tmp))
            fresh = Path(tmp) / tree.package
            new = generated_files(fresh)
            old = generated_files(tree.folder)
            for name in sorted(new | old):
                target = tree.folder / name
                if name not in new:
                    stale.append(f"{target} (no longer generated)")
                    if not opts.check:
                        target.unlink()
                elif name not in old or not filecmp.cmp(fresh / name, target, shallow=False):
                    stale.append(str(target))
                    if not opts.check:
                        shutil.copyfile(fresh / name, target)
    for path in stale:
        print(("differs: " if opts.check else "updated: ") + str(Path(path).relative_to(REPO_ROOT)))
    if opts.check and stale:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
