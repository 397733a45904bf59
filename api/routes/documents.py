"""What the service knows (GET /documents) and adding documents while serving (POST /admin/documents)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, File, HTTPException, UploadFile

from api.deps import AdminDep, ClientDep, ServiceDep, StateDep
from api.routes.admin import public_reason
from api.schemas import CLIENT_ERRORS, EDGE_ERRORS, AddedDocumentModel, DocumentList, DocumentModel, UploadResponse
from corpus.loader import CorpusError
from rag.documents import add_documents, list_documents, safe_file_name
from core.errors import RagError

log = logging.getLogger("rag.api")
router = APIRouter(tags=["documents"], responses=EDGE_ERRORS)

#: First bytes a file of each binary type must start with; text types are checked by their parser.
_MAGIC = {".pdf": (b"%PDF",), ".docx": (b"PK\x03\x04",)}


@router.get("/documents", response_model=DocumentList, summary="The indexed documents", responses=CLIENT_ERRORS)
async def documents(_: ClientDep, service: ServiceDep) -> DocumentList:
    index = service.index
    return DocumentList(
        build_id=index.build_id,
        documents=[DocumentModel(**{**asdict(d), "languages": list(d.languages)}) for d in list_documents(index)],
    )


async def _stage(uploads: list[UploadFile], folder: Path) -> list[tuple[str, Path]]:
    """Write the uploads to ``folder`` under their checked names; refuse unknown types before parsing."""
    staged = []
    for upload in uploads:
        try:
            name = safe_file_name(upload.filename or "")
        except CorpusError as exc:
            status = 415 if "unsupported file type" in exc.reason else 422
            raise HTTPException(status_code=status, detail=str(exc)) from None
        data = await upload.read()
        if not data.strip():
            raise HTTPException(status_code=422, detail=f"{name}: file is empty")
        magic = _MAGIC.get(Path(name).suffix.lower())
        if magic and not data.lstrip().startswith(magic):
            raise HTTPException(status_code=415, detail=f"{name}: the content is not a {Path(name).suffix.lower()} file")
        path = folder / name
        path.write_bytes(data)
        staged.append((name, path))
    return staged


@router.post(
    "/admin/documents",
    response_model=UploadResponse,
    summary="Add or replace documents (multipart field 'files'), index them and serve the new index from every server process",
    responses={
        401: {"description": "No or unknown API key."},
        403: {"description": "Not an admin key, or admin endpoints are disabled."},
        409: {"description": "The index could not be built; the previous index and corpus are unchanged."},
        503: {"description": "This server process is still loading (after RAG_LOAD_WAIT_S)."},
        413: {"description": "The upload is larger than RAG_MAX_UPLOAD_BYTES."},
        415: {"description": "A file type that is not accepted."},
        422: {"description": "A file that cannot be read; `detail` names it and says why."},
    },
)
async def upload(
    files: Annotated[list[UploadFile], File(description="One or more documents: .md .txt .rst .html .pdf .docx.")],
    _: AdminDep,
    state: StateDep,
) -> UploadResponse:
    from rag.service import index_corpus, update_settings

    service = await state.loaded_service()
    settings = update_settings(state.settings)
    with tempfile.TemporaryDirectory(prefix="rag-upload-") as tmp:
        staged = await _stage(files, Path(tmp))
        encoder = service.retriever.encoder

        def build():
            return index_corpus(settings, encoder=encoder)

        async with state.upload_lock:  # one upload at a time; questions are answered meanwhile
            try:
                added, report = await anyio.to_thread.run_sync(lambda: add_documents(staged, Path(settings.corpus_dir), build))
            except CorpusError as exc:
                raise HTTPException(status_code=422, detail=public_reason(exc)) from None
            except RagError as exc:
                log.error("document upload refused: %s", exc)
                raise HTTPException(status_code=409, detail=f"the index could not be built: {public_reason(exc)}") from None
            try:  # every worker, not only this one; the response waits for them (at most RAG_LOAD_WAIT_S)
                served = await state.reload_every_worker()
            except RagError as exc:
                raise HTTPException(status_code=409, detail=f"indexed, but the new index was not loaded: {public_reason(exc)}") from None
    log.info("added %s; serving build %s", ", ".join(d.file for d in added), report.build_id)
    return UploadResponse(
        added=[AddedDocumentModel(**asdict(d)) for d in added],
        build_id=report.build_id,
        articles=report.articles,
        chunks=report.chunks,
        embedded=report.embedded,
        workers=served["workers"],
        workers_total=served["workers_total"],
        pending=served["pending"],
    )
