"""File checksums and durable writes shared by everything that writes a folder atomically (index builds, the ONNX export)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(root: Path) -> dict[str, dict]:
    """Every file under ``root`` by relative path, with its SHA-256 and size (recorded in a manifest, checked on load)."""
    return {
        str(p.relative_to(root)): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (and the entry of ``root`` in its parent) to disk."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for directory in [*sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True), root, root.parent]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
