"""Liveness and readiness."""

from __future__ import annotations

import os
from dataclasses import asdict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import StateDep
from api.schemas import EDGE_ERRORS, Health, NotReady, Ready
from api.state import LOADING_RETRY_AFTER_S

router = APIRouter(tags=["operations"], responses=EDGE_ERRORS)


@router.get("/health", response_model=Health, summary="The process is alive")
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    response_model=Ready,
    summary="Every server process has loaded the index and answers",
    responses={
        503: {
            "model": NotReady,
            "description": "Some server process is still loading the model and the index (`detail` and `workers_loaded` of "
            "`workers_total` say how far; see Retry-After).",
        }
    },
)
async def ready(state: StateDep, request: Request):
    # With several workers the answer is the same whichever one takes the request: it reads every worker's
    # state from the board (api/workers.py), so a client that saw 200 is answered by any of them.
    readiness = state.readiness()
    workers = [asdict(w) for w in readiness.workers]
    service = state.service
    if service is None or not readiness.ready:
        body = NotReady(
            detail=state.loading_detail(readiness),
            request_id=getattr(request.state, "request_id", None),
            pid=os.getpid(),
            workers_loaded=readiness.loaded,
            workers_total=readiness.total,
            workers=workers,
        )
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": str(LOADING_RETRY_AFTER_S)})
    index = service.index
    return Ready(
        pid=os.getpid(),
        build_id=index.build_id,
        articles=len(index.articles),
        chunks=len(index),
        model=(index.manifest.get("model") or {}).get("name", ""),
        workers_loaded=readiness.loaded,
        workers_total=readiness.total,
        workers=workers,
    )
