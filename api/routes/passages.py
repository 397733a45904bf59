"""One passage with its article's metadata and its neighbours."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from api.deps import ClientDep, ServiceDep, StateDep
from api.schemas import CLIENT_ERRORS, EDGE_ERRORS, PASSAGE_ID_PATTERN, PassageDetail

router = APIRouter(tags=["passages"], responses={**EDGE_ERRORS, **CLIENT_ERRORS})


@router.get(
    "/passages/{passage_id}",
    response_model=PassageDetail,
    summary="A passage by id, with article metadata and neighbours",
    responses={404: {"description": "No passage with this id."}},
)
async def passage(
    passage_id: Annotated[
        str, Path(pattern=PASSAGE_ID_PATTERN, description="A passage id from /search or /ask results.")
    ],
    _: ClientDep,
    service: ServiceDep,
    state: StateDep,
) -> PassageDetail:
    detail = await state.run(PassageDetail.of, service.index, passage_id)  # a sharded build asks its shards
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no passage with id '{passage_id}'")
    return detail
