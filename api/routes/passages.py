"""One passage with its article's metadata and its neighbours."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path

from api.deps import ClientDep, ServiceDep
from api.schemas import CLIENT_ERRORS, EDGE_ERRORS, PASSAGE_ID_PATTERN, ArticleModel, PassageDetail, PassageRef

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
) -> PassageDetail:
    index = service.index
    chunk = index.chunk(passage_id)
    if chunk is None:
        raise HTTPException(status_code=404, detail=f"no passage with id '{passage_id}'")
    meta = index.articles.get(chunk.article, {})
    prev, nxt = index.neighbours(passage_id)

    def ref(c):
        return None if c is None else PassageRef(passage_id=c.id, section=list(c.section), text=c.text)

    return PassageDetail(
        passage_id=chunk.id,
        title=chunk.title,
        section=list(chunk.section),
        url=chunk.url,
        text=chunk.text,
        start=chunk.start,
        end=chunk.end,
        n_tokens=chunk.n_tokens,
        page=chunk.page,
        pages=[list(p) for p in chunk.pages],
        anchor=chunk.anchor,
        language=chunk.language,
        article=ArticleModel(**{k: v for k, v in meta.items() if k in ArticleModel.model_fields}),
        previous=ref(prev),
        next=ref(nxt),
    )
