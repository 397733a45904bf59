"""Records of a BEIR JSON-lines file (``corpus.jsonl``, ``queries.jsonl``): one object a line with
``_id`` and ``text``. The corpus reader and the benchmark's query reader share it and each turn a
:class:`JsonLinesError` into its own layer's error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


class JsonLinesError(ValueError):
    """The file cannot be read as BEIR JSON lines; the message says where and how to fix it."""


def beir_records(path: Path, kind: str) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line; ``kind`` ("corpus", "queries") names the format in messages."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise JsonLinesError(f"cannot read ({exc.strerror})") from None
    with handle:
        try:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise JsonLinesError(f"line {lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(record, dict) or "_id" not in record or "text" not in record:
                    raise JsonLinesError(f'line {lineno}: expected an object with "_id" and "text" (BEIR {kind} format)')
                yield lineno, record
        except UnicodeDecodeError as exc:
            raise JsonLinesError(f"not valid UTF-8 (at byte {exc.start} of a line); re-save the file as UTF-8") from None
