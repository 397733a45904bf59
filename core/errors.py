"""The library's errors: a small hierarchy that the CLI and the HTTP API translate at their edge."""

from __future__ import annotations


class RagError(Exception):
    """Base class. The message is a complete sentence a user can act on."""

    #: Suggested process exit code when this error ends a command.
    exit_code = 1


class ConfigError(RagError):
    """A setting or argument is out of range or inconsistent."""

    exit_code = 2


class IndexNotFoundError(RagError):
    """No index has been built at the configured location yet."""


class IndexFormatError(RagError):
    """An index exists but cannot be used: wrong version, wrong model, missing or damaged file."""


class IndexLockedError(RagError):
    """Another build holds the index directory."""


class QueryError(RagError):
    """A question or search request that cannot be served as asked."""

    exit_code = 2
