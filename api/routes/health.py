"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from api.deps import StateDep
from api.schemas import EDGE_ERRORS, Health, Ready

router = APIRouter(tags=["operations"], responses=EDGE_ERRORS)


@router.get("/health", response_model=Health, summary="The process is alive")
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    response_model=Ready,
    summary="The index is loaded and answering",
    responses={503: {"description": "Still loading, or the index could not be loaded."}},
)
async def ready(state: StateDep):
    service = state.service
    if service is None:
        raise HTTPException(status_code=503, detail="the index is not loaded yet; retry in a few seconds")
    index = service.index
    return Ready(
        build_id=index.build_id,
        articles=len(index.articles),
        chunks=len(index),
        model=(index.manifest.get("model") or {}).get("name", ""),
    )
