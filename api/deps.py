"""Dependencies shared by the routes, declared once as Annotated aliases."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.state import AppState
from api.security import PAGE_TOKEN_PREFIX, Principal
from rag.answer.service import AnswerService

_bearer = HTTPBearer(auto_error=False, description="An API key, when the service is configured with keys.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The same API key, as a header.")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def get_state(request: Request) -> AppState:
    return request.app.state.ctx


async def get_service(request: Request) -> AnswerService:
    """The answer service (waiting for it while this worker still loads); its build names the response (X-Build-ID)."""
    service = await request.app.state.ctx.loaded_service()
    request.state.build_id = service.index.build_id
    return service


def _key(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    return (bearer.credentials if bearer else None) or header or None


def client_guard(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> Principal:
    """Check the API key when keys are configured, then the caller's rate limit."""
    state: AppState = request.app.state.ctx
    key = _key(bearer, header)
    address = request.client.host if request.client else "unknown"
    if state.keys.required:
        if not key:
            raise HTTPException(
                status_code=401,
                detail="this service needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                headers=_CHALLENGE,
            )
        role = state.keys.role_of(key)
        if role is None and key.startswith(PAGE_TOKEN_PREFIX) and state.page_tokens is not None:
            principal = _page_visitor(state, key, address)
        elif role is None:
            raise HTTPException(status_code=401, detail="the API key is not valid", headers=_CHALLENGE)
        else:
            principal = Principal(role, "key:" + hashlib.sha256(key.encode()).hexdigest()[:16])
    else:
        principal = Principal("anonymous", "addr:" + address)
    limiter = state.page_rate if principal.role == "page" else state.rate
    wait = limiter.check(principal.label)
    if wait is not None:
        raise HTTPException(
            status_code=429, detail=f"too many requests; retry in {wait} s", headers={"Retry-After": str(wait)}
        )
    return principal


def _page_visitor(state: AppState, token: str, address: str) -> Principal:
    """A visitor of the bundled page, by its page token; rate-limited per address on its own limit."""
    problem = state.page_tokens.check(token)
    if problem == "expired":
        raise HTTPException(status_code=401, detail="the page token has expired; reload the page", headers=_CHALLENGE)
    if problem:
        raise HTTPException(status_code=401, detail="the API key is not valid", headers=_CHALLENGE)
    return Principal("page", "page:" + address)


def admin_guard(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_header)],
) -> Principal:
    """Admin endpoints need an admin key, always."""
    state: AppState = request.app.state.ctx
    if not state.keys.has_admin:
        raise HTTPException(
            status_code=403,
            detail="admin endpoints are disabled; set RAG_ADMIN_KEYS to use them (or send the server SIGHUP to reload)",
        )
    key = _key(bearer, header)
    if not key:
        raise HTTPException(status_code=401, detail="admin endpoints need an admin API key", headers=_CHALLENGE)
    role = state.keys.role_of(key)
    if role is None:
        raise HTTPException(status_code=401, detail="the API key is not valid", headers=_CHALLENGE)
    if role != "admin":
        raise HTTPException(status_code=403, detail="this key is not an admin key")
    return Principal("admin", "admin")


StateDep = Annotated[AppState, Depends(get_state)]
ServiceDep = Annotated[AnswerService, Depends(get_service)]
ClientDep = Annotated[Principal, Depends(client_guard)]
AdminDep = Annotated[Principal, Depends(admin_guard)]
