"""Dependencies shared by the routes, declared once as Annotated aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.app import AppState
from rag.answer import AnswerService


def get_state(request: Request) -> AppState:
    return request.app.state.ctx


def get_service(request: Request) -> AnswerService:
    service = request.app.state.ctx.service
    if service is None:
        raise HTTPException(status_code=503, detail="the index is not loaded yet; retry in a few seconds")
    return service


StateDep = Annotated[AppState, Depends(get_state)]
ServiceDep = Annotated[AnswerService, Depends(get_service)]
