"""Errors of the evaluation harness: unusable datasets, question sets and result files."""

from __future__ import annotations

from core.errors import ConfigError


class EvalDataError(ConfigError):
    """A dataset, question set or results file that cannot be used; the message names it and says why."""
