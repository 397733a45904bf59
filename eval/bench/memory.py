"""What a process holds, read from /proc: resident and proportional memory (PSS: shared pages divided
among their users), peak RSS, and what the mappings of one file or folder take. Figures in MB (1024 kB)."""

from __future__ import annotations

from pathlib import Path


def proc_kb_fields(pid: int | str, file: str, keys: tuple[str, ...]) -> dict[str, float]:
    """The ``Key:  N kB`` lines of ``/proc/<pid>/<file>`` named in ``keys``, in MB (absent where unreadable)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
            key = line.split(":")[0]
            if key in keys:
                out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def status_mb(pid: int, field: str) -> float | None:
    """One field of /proc/<pid>/status (VmHWM, VmRSS, ...) in MB, or None."""
    value = proc_kb_fields(pid, "status", (field,)).get(field)
    return None if value is None else round(value, 1)


def rollup_mb(pid: int) -> dict:
    """RSS and PSS (proportional: shared pages divided among their users) from /proc/<pid>/smaps_rollup."""
    keys = ("Rss", "Pss", "Shared_Clean", "Private_Dirty", "Pss_File", "Pss_Anon")
    return {key.lower(): round(value, 1) for key, value in proc_kb_fields(pid, "smaps_rollup", keys).items()}


def process_mb(pid: int | str = "self") -> dict:
    """Resident memory of a process (VmRSS, RssAnon, RssFile, VmHWM) and its PSS, unrounded."""
    return {**proc_kb_fields(pid, "status", ("VmRSS", "RssAnon", "RssFile", "VmHWM")), **proc_kb_fields(pid, "smaps_rollup", ("Pss",))}


def mapping_mb(path: str, pid: int | str = "self") -> dict:
    """RSS and PSS of a process's mappings of one file, or of every file under a folder (/proc/<pid>/smaps)."""
    rss = pss = 0.0
    inside = False
    try:
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if not line[:1].isupper() or " kB" not in line:  # a mapping's header line
                name = line.split(maxsplit=5)[5] if len(line.split(maxsplit=5)) == 6 else ""
                inside = name == path or name.startswith(path.rstrip("/") + "/")
            elif inside and line.startswith("Rss:"):
                rss += int(line.split()[1]) / 1024
            elif inside and line.startswith("Pss:"):
                pss += int(line.split()[1]) / 1024
    except OSError:
        pass
    return {"rss": rss, "pss": pss}
