"""Ranked passages for a query: the same shape as ``rag search --json``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from api.deps import ClientDep, ServiceDep, StateDep
from api.schemas import (
    CLIENT_ERRORS,
    EDGE_ERRORS,
    MAX_QUESTION_CHARS,
    MAX_TOP_K,
    VISIBLE_PATTERN,
    FilterValue,
    Mode,
    SearchResponse,
    clean_text,
)
from core.errors import QueryError
from rag.search.retrieve import Filters, unmatched_filters

router = APIRouter(tags=["search"], responses={**EDGE_ERRORS, **CLIENT_ERRORS})


@router.get(
    "/search",
    response_model=SearchResponse,
    summary="Ranked passages with breadcrumbs and scores",
    responses={400: {"description": "Filters that no document matches (`detail` lists the values that exist)."}},
)
async def search(
    _: ClientDep,
    service: ServiceDep,
    state: StateDep,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUESTION_CHARS,
            pattern=VISIBLE_PATTERN,
            description="The query.",
            examples=["Outer Space Treaty"],
        ),
    ],
    k: Annotated[int, Query(ge=1, le=MAX_TOP_K, description="Number of passages.")] = 5,
    mode: Annotated[Mode, Query(description="hybrid, dense or bm25.")] = "hybrid",
    article: Annotated[list[FilterValue] | None, Query(max_length=50, description="Only these article slugs.")] = None,
    category: Annotated[list[FilterValue] | None, Query(max_length=50, description="Only articles in these categories.")] = None,
    tag: Annotated[list[FilterValue] | None, Query(max_length=50, description="Only articles with these tags.")] = None,
    language: Annotated[
        list[FilterValue] | None, Query(max_length=50, description="Only passages in these languages (ISO 639-1 codes or names).")
    ] = None,
) -> SearchResponse:
    query = clean_text(q)
    if not query:
        raise HTTPException(status_code=422, detail="q: is empty; send some words to search for")
    filters = Filters.from_mapping({"article": article, "category": category, "tag": tag, "language": language})
    problem = await state.run(unmatched_filters, service.index, filters) if filters else None
    if problem:
        raise QueryError(problem)
    results = await state.run(service.retriever.search, query, k=k, mode=mode, filters=filters)
    return SearchResponse.of(query, results)
