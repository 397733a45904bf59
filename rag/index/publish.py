"""Publishing a build: the one-build-at-a-time lock, the folder a build is written in, and the atomic swap of the link.

``INDEX_DIR`` is a symbolic link to one complete build inside the sibling folder ``INDEX_DIR.builds/``.
A build writes a new folder, fsyncs it, and then replaces the link with ``rename(2)``, which is atomic:
at every instant the link names either the old build or the new one.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import os
import secrets
import shutil
from pathlib import Path

from core.errors import ConfigError, IndexLockedError
from core.files import fsync_tree
from rag.faults import checkpoint


def builds_dir(index_dir: Path) -> Path:
    return index_dir.with_name(index_dir.name + ".builds")


class BuildLock:
    """An exclusive, non-blocking lock on an index's builds folder (released if the process dies)."""

    def __init__(self, index_dir: Path):
        self.index_dir = index_dir
        self.path = builds_dir(index_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> BuildLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise IndexLockedError(
                    f"another build is writing {self.index_dir} (pid {holder}); wait for it to finish and try again"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def check_target(index_dir: Path) -> None:
    """Refuse to publish over anything but an index link, nothing, or an empty folder."""
    if index_dir.is_symlink() or not index_dir.exists():
        return
    if index_dir.is_dir() and not any(index_dir.iterdir()):
        return
    raise ConfigError(
        f"{index_dir} exists and is not an index link made by 'rag index'; choose another --index-dir or remove it"
    )


def clean_stale(index_dir: Path, keep: set[str]) -> None:
    """Remove killed builds and old ones; the current build and the one before it stay."""
    root = builds_dir(index_dir)
    for path in root.iterdir():
        if path.name.startswith(".") or not path.is_dir():
            continue
        if path.name.endswith(".tmp") or path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    # A build killed between creating its new link and renaming it over INDEX_DIR leaves the link behind.
    for link in index_dir.parent.glob(f".{index_dir.name}.link-*"):
        if link.is_symlink():
            link.unlink(missing_ok=True)


def current_build(index_dir: Path) -> str | None:
    """The id of the build the index link names, or None when there is none yet."""
    if index_dir.is_symlink():
        return Path(os.readlink(index_dir)).name
    return None


def new_build_folder(index_dir: Path) -> tuple[str, Path]:
    """A fresh build id and its folder in progress (``<id>.tmp``, removed by the next build if this one dies)."""
    build_id = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)
    tmp = builds_dir(index_dir) / f"{build_id}.tmp"
    tmp.mkdir(parents=True)
    return build_id, tmp


def publish(index_dir: Path, tmp: Path, build_id: str) -> None:
    """Make the complete build in ``tmp`` durable and point the index link at it in one atomic rename."""
    fsync_tree(tmp)
    final = builds_dir(index_dir) / build_id
    os.rename(tmp, final)
    checkpoint("before-swap")
    link_tmp = index_dir.with_name(f".{index_dir.name}.link-{build_id}")
    os.symlink(os.path.relpath(final, index_dir.parent), link_tmp)
    if index_dir.is_dir() and not index_dir.is_symlink():
        index_dir.rmdir()  # check_target allowed only an empty folder here
    os.replace(link_tmp, index_dir)
    fd = os.open(index_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    checkpoint("after-swap")
