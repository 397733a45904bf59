"""Prometheus metrics in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.schemas import CLIENT_ERRORS, EDGE_ERRORS
from api.deps import ClientDep, StateDep

router = APIRouter(tags=["operations"], responses={**EDGE_ERRORS, **CLIENT_ERRORS})


@router.get(
    "/metrics",
    summary="Request counts, latency histograms per route, index size, each worker's loaded state",
    response_class=Response,
    responses={403: {"description": "A page token does not open /metrics."}},
)
async def metrics(caller: ClientDep, state: StateDep) -> Response:
    if caller.role == "page":
        raise HTTPException(status_code=403, detail="a page token opens the question endpoints only; /metrics needs a client key")
    return Response(state.metrics.exposition(state.readiness()), media_type=CONTENT_TYPE_LATEST)
