"""Prometheus metrics in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.schemas import CLIENT_ERRORS, EDGE_ERRORS
from api.deps import ClientDep, StateDep

router = APIRouter(tags=["operations"], responses={**EDGE_ERRORS, **CLIENT_ERRORS})


@router.get("/metrics", summary="Request counts, latency histograms per route, index size", response_class=Response)
async def metrics(_: ClientDep, state: StateDep) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
