"""The commands of ``rag`` that live in the packages above this one: the service's interfaces (``serve``,
``mcp``: api/) and the harness (``eval``, ``bench``, ``tune``, ``train-reader``: eval/). Each is registered here
by name, with its one-line help, and imported only when it runs, so ``rag --help`` and ``rag search`` import neither.

This module names those packages as strings and never imports them itself; ``rag/cli.py`` builds the
``rag`` group on :class:`LazyGroup`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Annotated

import click
import typer
from typer.core import TyperGroup


@dataclass(frozen=True)
class LazyCommand:
    """A command whose module is imported only when it runs: ``rag --help`` lists it from ``help``
    (its one-line help, pinned to the command's own by a test), so listing commands imports nothing."""

    target: str  # "module:attribute": a ``typer.Typer`` (a group) or a command function
    help: str

    def load(self, name: str) -> click.Command:
        """Import the command and make it what ``app.add_typer`` / ``app.command`` made of it."""
        module, attribute = self.target.split(":")
        obj = getattr(importlib.import_module(module), attribute)
        holder = typer.Typer(add_completion=False, rich_markup_mode=None)
        if isinstance(obj, typer.Typer):
            holder.add_typer(obj, name=name)
            return typer.main.get_command(holder).commands[name]
        holder.command(name)(obj)  # a command function
        return typer.main.get_command(holder)


#: The registered commands, listed in this order after the library's own.
LAZY_COMMANDS: dict[str, LazyCommand] = {
    "serve": LazyCommand("api.cli:serve_command", "Serve the HTTP API and the chat widget."),
    "mcp": LazyCommand(
        "api.cli:mcp_command", "Serve the Model Context Protocol: tools search and ask, passages as resources (stdio by default)."
    ),
    "tune": LazyCommand(
        "eval.tune.cli:tune_command", "Fine-tune the bundled encoder on labelled questions and write a model folder with a model card."
    ),
    "train-reader": LazyCommand(
        "eval.reader.cli:train_reader_command",
        "Train a reader (span head on the bundled encoder) on SQuAD 2.0 and export it as int8 ONNX with a model card.",
    ),
    "eval": LazyCommand(
        "eval.cli:eval_app", "Evaluate retrieval and answers: the QA set, BEIR benchmarks, comparisons, calibration."
    ),
    "bench": LazyCommand("eval.bench.cli:bench_app", "Performance benchmarks: print tables and write JSON (figures, never pass/fail)."),
}


def _print_version(value: bool) -> None:
    if value:
        from rag import __version__

        typer.echo(f"rag {__version__}")
        raise typer.Exit(0)


def root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit.")] = False,
) -> None:
    """The ``rag`` group's own options (``--version``)."""


class LazyGroup(TyperGroup):
    """The ``rag`` group: its own commands, then :data:`LAZY_COMMANDS`, imported on first use."""

    _listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*(name for name in super().list_commands(ctx) if name not in LAZY_COMMANDS), *LAZY_COMMANDS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = LAZY_COMMANDS.get(cmd_name)
        if lazy is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # `rag --help`: the one line, without importing the command's module
            return click.Command(cmd_name, help=lazy.help)
        self.commands[cmd_name] = lazy.load(cmd_name)
        return self.commands[cmd_name]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_commands(ctx, formatter)
        finally:
            self._listing = False
