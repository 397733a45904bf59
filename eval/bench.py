"""``rag bench``: performance figures of indexing, the query path, the HTTP service and memory."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Performance benchmarks: print a table and write JSON (figures, never pass/fail).", no_args_is_help=False)
