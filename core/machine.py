"""Facts about this machine and its installed libraries, read once where they are needed
(the int8 recipe of the ONNX export, index manifests, benchmark reports)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Iterable

_CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_field(prefixes: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of ``prefixes`` (None where absent)."""
    try:
        with _CPUINFO.open(encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(prefixes):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (x86 ``flags``, Arm ``Features``); empty where /proc/cpuinfo is not available."""
    return frozenset((_cpuinfo_field(("flags", "Features")) or "").split())


def cpu_model() -> str:
    """The CPU's model name, or what ``platform`` knows, or "unknown"."""
    return _cpuinfo_field(("model name",)) or platform.processor() or "unknown"


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each of ``names``; packages that are not installed are left out."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
