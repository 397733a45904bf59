"""Filters: which articles (by slug, category or tag) and which passages (by language) a search may return.

One class for every interface: the HTTP API validates request bodies with it (it is a pydantic model, so
its JSON schema is the API's contract), the CLI and query strings build it with :meth:`Filters.from_mapping`,
and retrieval reads its case-folded value sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.errors import QueryError
from corpus.language import language_code

FILTER_KEYS = ("article", "category", "tag", "language")
FilterValue = Annotated[str, Field(min_length=1, max_length=200)]


def _folded(value: str | Iterable[str] | None) -> frozenset[str]:
    if value is None:
        return frozenset()
    items = [value] if isinstance(value, str) else value
    return frozenset(v.strip().casefold() for v in items if v.strip())


class Filters(BaseModel):
    """Restrict answers to part of the corpus. Each field takes one value or a list; matching ignores case."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"category": "Law"}, {"article": ["space-diplomacy"]}]})

    article: FilterValue | Annotated[list[FilterValue], Field(max_length=50)] | None = Field(None, description="Article slug(s).")
    category: FilterValue | Annotated[list[FilterValue], Field(max_length=50)] | None = Field(
        None, description="Category name(s) or slug(s)."
    )
    tag: FilterValue | Annotated[list[FilterValue], Field(max_length=50)] | None = Field(None, description="Tag(s).")
    language: FilterValue | Annotated[list[FilterValue], Field(max_length=50)] | None = Field(
        None, description="Language(s) of the passages: ISO 639-1 codes ('en', 'fr') or English names."
    )

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object] | None) -> Filters:
        """Filters from loosely typed input (CLI options, query strings): unknown keys and values that are
        not strings are a QueryError; blank values are ignored."""
        raw = raw or {}
        unknown = set(raw) - set(FILTER_KEYS)
        if unknown:
            raise QueryError(f"unknown filter {sorted(unknown)[0]!r}; filters are: {', '.join(FILTER_KEYS)}")
        values: dict[str, object] = {}
        for key in FILTER_KEYS:
            value = raw.get(key)
            if value is None:
                continue
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple, set, frozenset)) or not all(isinstance(v, str) for v in items):
                raise QueryError(f"filter {key!r} must be a string or a list of strings")
            values[key] = value
        # The checks above are the whole contract of this path (no length limits, blanks ignored).
        return cls.model_construct(**values)

    @property
    def articles(self) -> frozenset[str]:
        """Article slugs, case-folded."""
        return _folded(self.article)

    @property
    def categories(self) -> frozenset[str]:
        """Category names or slugs, case-folded."""
        return _folded(self.category)

    @property
    def tags(self) -> frozenset[str]:
        return _folded(self.tag)

    @property
    def languages(self) -> frozenset[str]:
        """ISO 639-1 codes of the passages' sections ("French" -> "fr")."""
        return frozenset(language_code(v) for v in _folded(self.language))

    def __bool__(self) -> bool:
        return bool(self.articles or self.categories or self.tags or self.languages)
