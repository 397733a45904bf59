"""A folder of every format indexed with the bundled article and the real model: each question is answered
with a citation of the right document, section and page (or anchor), and no quote carries markup.

The documents overlap on purpose (two about the Rescue Agreement, two about liability and registration),
so a citation must come from the right one, not merely from the right topic.
"""

from __future__ import annotations

import re
import shutil

import pytest

from corpus import DEFAULT_CORPUS_DIR, load_corpus
from rag.answer.service import AnswerService
from test_documents import BILINGUAL_MD, FIXTURES, HTML_PAGE, MESSY_MD, RST

pytestmark = [pytest.mark.model, pytest.mark.slow]

MARKUP_RE = re.compile(r"<[A-Za-z/!]|#{2,}|\]\(|\*\*|&[a-z]+;")

# question, title, last breadcrumb part, page (PDF) or anchor (HTML)
CASES = [
    ("What information does a State furnish when it registers a space object?", "Registration Convention Guide", "Information Furnished", 1, ""),
    ("Which office keeps the register of space objects for the Secretary-General?", "Registration Convention Guide", "Role of the Secretariat", 2, ""),
    ("How much did the Soviet Union pay Canada after Cosmos 954 crashed?", "Liability for Damage Caused by Space Objects", "The Cosmos 954 Claim", 1, ""),
    ("How long after the damage may a claim for compensation be presented?", "Liability for Damage Caused by Space Objects", "Time Limits", 2, ""),
    ("What steps must a State take to rescue personnel who land in its territory?", "Rescue Agreement Briefing", "Search and Rescue", None, ""),
    ("What happens to space objects found beyond the territory of the launching authority?", "Rescue Agreement", "Return of objects", None, "return"),
    ("Is outer space subject to national appropriation by claim of sovereignty?", "Outer Space Treaty", "Article II", None, ""),
    ("Have the major spacefaring nations ratified the Moon Agreement?", "Moon Agreement Primer", "Status", None, "status"),
    ("How many parties does the Registration Convention have?", "Status of the Outer Space Treaties", "Registration Convention", 1, ""),
    ("When did the Soviet Union launch Sputnik?", "Space Diplomacy", "The Cold War Era and the Emergence of Space Diplomacy", None, ""),
]


@pytest.fixture(scope="module")
def documents_service(tmp_path_factory, bundled_index) -> AnswerService:
    from embeddings.cache import EmbeddingCache
    from rag.index import build_index, load_index
    from rag.search.retrieve import Retriever

    root = tmp_path_factory.mktemp("documents")
    corpus = root / "corpus"
    shutil.copytree(DEFAULT_CORPUS_DIR, corpus)
    for name in ("registration-guide.pdf", "liability-notes.pdf", "status-note.pdf", "rescue-agreement.docx"):
        shutil.copy(FIXTURES / name, corpus / name)
    (corpus / "rescue.html").write_text(HTML_PAGE, encoding="utf-8")
    (corpus / "outer-space-treaty.md").write_text(MESSY_MD, encoding="utf-8")
    (corpus / "moon.rst").write_text(RST, encoding="utf-8")
    (corpus / "moon-agreement.md").write_text(BILINGUAL_MD, encoding="utf-8")
    cache = EmbeddingCache(bundled_index.cache_path)  # the bundled article's vectors are already there
    try:
        build_index(load_corpus(corpus), root / "index", bundled_index.encoder, cache=cache)
    finally:
        cache.close()
    index = load_index(root / "index", bundled_index.encoder)
    return AnswerService(Retriever(index, bundled_index.encoder))


@pytest.mark.parametrize("question, title, section, page, anchor", CASES, ids=[c[2] for c in CASES])
def test_each_format_answers_from_the_right_document_section_and_page(documents_service, question, title, section, page, anchor):
    answer = documents_service.ask(question)
    assert not answer.abstained, (question, answer.support)
    right = [c for c in answer.citations if (c.title, c.section[-1]) == (title, section)]
    assert right, [(c.title, c.section) for c in answer.citations]
    for citation in right:
        assert citation.section[0] == title  # the breadcrumb starts with the document's own title
        assert citation.page == page and citation.anchor == anchor
    for citation in answer.citations:
        assert not MARKUP_RE.search(citation.quote), citation.quote
        chunk = documents_service.retriever.index.chunk(citation.passage_id)
        assert chunk.text[citation.start : citation.end] == citation.quote
        assert citation.page == chunk.page_at(citation.start)


def test_every_passage_title_names_its_document(documents_service):
    index = documents_service.retriever.index
    titles = {c.article: c.title for c in index.chunks}
    assert titles == {
        "space-diplomacy": "Space Diplomacy",
        "registration-guide": "Registration Convention Guide",
        "liability-notes": "Liability for Damage Caused by Space Objects",
        "status-note": "Status of the Outer Space Treaties",
        "rescue-agreement": "Rescue Agreement Briefing",
        "rescue": "Rescue Agreement",
        "outer-space-treaty": "Outer Space Treaty",
        "moon": "Moon Agreement Primer",
        "moon-agreement": "Moon Agreement",
    }
    assert all(not MARKUP_RE.search(c.text) for c in index.chunks)


def test_a_bilingual_document_answers_in_the_language_asked_for(documents_service):
    from rag.search.retrieve import Filters

    question = "Can the Moon be appropriated by a claim of sovereignty?"
    english = documents_service.ask(question)
    cited = [c for c in english.citations if c.title == "Moon Agreement"]
    assert cited and all("La Lune" not in c.quote for c in cited)
    french = documents_service.ask(question, filters=Filters.from_mapping({"language": "fr"}))
    passages = [r.chunk for r in french.passages]
    assert passages and {c.language for c in passages} == {"fr"}
    assert all(c.article == "moon-agreement" for c in passages)
    assert french.citations and all("La Lune" in c.quote for c in french.citations)
