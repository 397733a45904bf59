"""Liveness and readiness."""

from __future__ import annotations

import os

from fastapi import APIRouter, HTTPException

from api.deps import LOADING_RETRY_AFTER_S, StateDep
from api.schemas import EDGE_ERRORS, Health, Ready

router = APIRouter(tags=["operations"], responses=EDGE_ERRORS)


@router.get("/health", response_model=Health, summary="The process is alive")
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    response_model=Ready,
    summary="The index is loaded and answering",
    responses={503: {"description": "Still loading the model and the index (`detail` says so; see Retry-After)."}},
)
async def ready(state: StateDep):
    service = state.service
    if service is None:
        raise HTTPException(
            status_code=503, detail=state.loading_detail(), headers={"Retry-After": str(LOADING_RETRY_AFTER_S)}
        )
    index = service.index
    return Ready(
        pid=os.getpid(),
        build_id=index.build_id,
        articles=len(index.articles),
        chunks=len(index),
        model=(index.manifest.get("model") or {}).get("name", ""),
    )
