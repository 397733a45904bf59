"""Operator endpoints: always behind an admin key."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException

from api.schemas import EDGE_ERRORS
from api.deps import AdminDep, StateDep
from core.errors import RagError

router = APIRouter(prefix="/admin", tags=["operations"], responses=EDGE_ERRORS)

_PATH_RE = re.compile(r"(?:/[^\s/:'\"]+)+/([^\s/:'\"]+)")


def public_reason(exc: Exception) -> str:
    """An error message without the server's file-system layout (paths become file names)."""
    return _PATH_RE.sub(r"\1", str(exc))


@router.post(
    "/reload",
    summary="Load the index the index directory names now, in every server process, keeping the old one if the new one is unusable",
    description=(
        "Reloads the process that takes the request, then (with `rag serve --workers N`) every other one, and answers once "
        "all serve the new build or RAG_LOAD_WAIT_S has passed: `workers` lists each process's build, `pending` the ones "
        "that did not switch in time."
    ),
    responses={
        401: {"description": "No or unknown API key."},
        403: {"description": "Not an admin key, or admin endpoints are disabled."},
        409: {"description": "The new index is broken or incompatible; the previous one is still served."},
    },
)
async def reload(_: AdminDep, state: StateDep) -> dict:
    previous = state.service.index.build_id if state.service else None
    try:
        return await state.reload_every_worker()
    except RagError as exc:
        raise HTTPException(
            status_code=409, detail=f"reload refused, still serving build {previous}: {public_reason(exc)}"
        ) from None
