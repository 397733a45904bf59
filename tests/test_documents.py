"""Real documents: titles, sections, pages, anchors and languages from messy markdown, HTML, DOCX, PDF, rst, txt.

The PDF and DOCX fixtures are committed files made by ``tests/fixtures/documents/make_fixtures.py``
(headless Chromium prints PDFs with its running header and footer; python-docx writes the DOCX).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from corpus import CorpusError, load_corpus, parse_file
from corpus.builder import readable_title
from rag.text.chunking import chunk_article

FIXTURES = Path(__file__).parent / "fixtures" / "documents"
MARKUP_RE = re.compile(r"<[A-Za-z/!]|#{2,}|^#|\]\(|\*\*|&[a-z]+;", re.M)

MESSY_MD = """<meta name="viewport" content="width=device-width, initial-scale=1">
<div class="treaty">

##Article I

The exploration and use of outer space shall be carried out for the benefit of all countries.

> > In accordance with the [Charter of the United Nations][charter].[^1]

[charter]: https://www.un.org/en/about-us/un-charter "UN Charter"
[^1]: Adopted in San Francisco in 1945.

##Article II

Outer space is not subject to <b>national appropriation</b> by claim of sovereignty.

####Convention on International Liability for Damage Caused by Space Objects

States bear responsibility<br> for national activities in outer space.

Status of Ratification
----------------------

| State | Year |
|-------|------|
| Canada | 1967 |

</div>
"""

BILINGUAL_MD = """---
title: Moon Agreement
---

## Article 11

The Moon and its natural resources are the common heritage of mankind, which finds its expression in the provisions of this Agreement, and in particular in paragraph 5 of this article.

The Moon is not subject to national appropriation by any claim of sovereignty, by means of use or occupation, or by any other means.

La Lune et ses ressources naturelles constituent le patrimoine commun de l'humanité, qui trouve son expression dans les dispositions du présent Accord, et en particulier au paragraphe 5 du présent article.

La Lune ne peut faire l'objet d'aucune appropriation nationale par proclamation de souveraineté, ni par voie d'utilisation ou d'occupation, ni par aucun autre moyen.
"""

HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Rescue Agreement | Space Law Encyclopedia</title>
<meta property="og:title" content="Rescue Agreement (1968)"><link rel="canonical" href="https://law.example.org/rescue-agreement">
<script>window.dataLayer = [{"h2": "<h2>not a heading</h2>"}];</script><style>h2 { color: red }</style></head>
<body>
<div id="cookie-consent" class="cookie-banner">We use cookies to improve your experience. <button>Accept all</button></div>
<header class="site-header"><a href="/">Space Law Encyclopedia</a><nav><ul><li><a href="/treaties">Treaties</a></li><li><a href="/about">About us</a></li></ul></nav></header>
<main>
<article>
<h1>Rescue Agreement</h1>
<p>The <a href="/treaty">Rescue Agreement</a> of 1968 elaborates the duty to assist astronauts in distress.<sup class="reference">[1]</sup></p>
<h2 id="obligations">Obligations of States</h2>
<p>A State that learns of an accident to a spacecraft crew notifies the launching authority &amp; the Secretary-General.</p>
<h3><span class="mw-headline" id="return">Return of objects</span><span class="mw-editsection">[edit]</span></h3>
<p>Space objects found beyond the territory of the launching authority are returned on request.</p>
</article>
<aside class="sidebar">Related: Liability Convention</aside>
</main>
<footer><p>© 2025 Space Law Encyclopedia · <a href="/privacy">Privacy</a></p></footer>
</body></html>
"""

RST = """=====================
Moon Agreement Primer
=====================

:Author: Fixture Writer

The Moon Agreement of 1979 declares the Moon the *common heritage* of mankind.

Background
==========

Negotiated in the `Committee <https://example.org>`_ on the Peaceful Uses of Outer Space.

.. _status:

Status
======

Ratified by eighteen States; none of the major spacefaring nations.
"""


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _check_clean(article) -> None:
    """Every section slices clean prose out of the text, and every chunk slices the text exactly."""
    for section in article.sections:
        body = article.text[section.start : section.end]
        assert body and body == body.strip()
        assert not MARKUP_RE.search(body), body
        for crumb in section.breadcrumb:
            assert not MARKUP_RE.search(crumb), crumb
    for chunk in chunk_article(article):
        assert article.text[chunk.start : chunk.end] == chunk.text


def _crumbs(article) -> list[tuple[str, ...]]:
    return [s.breadcrumb for s in article.sections]


# ------------------------------------------------------------------------ titles


@pytest.mark.parametrize(
    "name, title",
    [
        ("outer-space-treaty.md", "Outer Space Treaty"),
        ("convention_on_registration.pdf", "Convention on Registration"),
        ("UN-COPUOS-report-2023.docx", "UN COPUOS Report 2023"),
    ],
)
def test_readable_title_from_file_name(name, title):
    assert readable_title(name) == title


def test_messy_markdown_title_is_the_file_name_never_a_section_heading(tmp_path):
    (article,) = parse_file(_write(tmp_path, "outer-space-treaty.md", MESSY_MD))
    assert article.title == "Outer Space Treaty"
    assert _crumbs(article) == [
        ("Outer Space Treaty", "Article I"),
        ("Outer Space Treaty", "Article II"),
        ("Outer Space Treaty", "Article II", "Convention on International Liability for Damage Caused by Space Objects"),
        ("Outer Space Treaty", "Status of Ratification"),
    ]
    _check_clean(article)
    assert "national appropriation by claim" in article.text
    assert "States bear responsibility for national activities" in article.text
    assert "Canada | 1967" in article.text
    assert "In accordance with the Charter of the United Nations.\n\nAdopted in San Francisco in 1945." in article.text


def test_single_h1_is_the_title_and_front_matter_wins(tmp_path):
    (one,) = parse_file(_write(tmp_path, "a.md", "<meta charset='utf-8'>\n#Outer Space Treaty\n\n##Article I\n\nText one.\n"))
    assert one.title == "Outer Space Treaty"
    assert _crumbs(one) == [("Outer Space Treaty", "Article I")]
    (fm,) = parse_file(_write(tmp_path, "b.md", "---\ntitle: The Treaty\n---\n# Article I\n\nText.\n\n# Article II\n\nMore.\n"))
    assert fm.title == "The Treaty"
    assert _crumbs(fm) == [("The Treaty", "Article I"), ("The Treaty", "Article II")]
    (setext,) = parse_file(_write(tmp_path, "c.md", "Moon Agreement\n==============\n\nIntro.\n\nArticle 1\n---------\n\nBody.\n"))
    assert setext.title == "Moon Agreement"
    assert _crumbs(setext) == [("Moon Agreement",), ("Moon Agreement", "Article 1")]


# ------------------------------------------------------------------------ languages


def test_bilingual_section_keeps_each_language(tmp_path):
    (article,) = parse_file(_write(tmp_path, "moon.md", BILINGUAL_MD))
    languages = [(s.breadcrumb, s.language) for s in article.sections]
    assert languages == [(("Moon Agreement", "Article 11"), "en"), (("Moon Agreement", "Article 11"), "fr")]
    english, french = (article.text[s.start : s.end] for s in article.sections)
    assert english.startswith("The Moon and its natural resources") and english.endswith("or by any other means.")
    assert french.startswith("La Lune et ses ressources") and "heritage" not in french
    chunks = chunk_article(article)
    assert {c.language for c in chunks} == {"en", "fr"}
    assert all(("La Lune" in c.text) == (c.language == "fr") for c in chunks)


def test_monolingual_bundled_article_is_one_language(bundled_article):
    assert {s.language for s in bundled_article.sections} == {"en"}


# ------------------------------------------------------------------------ HTML


def test_html_main_content_sections_anchors_and_metadata(tmp_path):
    (article,) = parse_file(_write(tmp_path, "rescue.html", HTML_PAGE))
    assert article.title == "Rescue Agreement"
    assert article.format == "html"
    assert article.url == "https://law.example.org/rescue-agreement"
    assert [(s.breadcrumb, s.anchor) for s in article.sections] == [
        (("Rescue Agreement",), ""),
        (("Rescue Agreement", "Obligations of States"), "obligations"),
        (("Rescue Agreement", "Obligations of States", "Return of objects"), "return"),
    ]
    for furniture in ("cookies", "Accept all", "About us", "Privacy", "dataLayer", "color: red", "Related:", "[edit]", "[1]"):
        assert furniture not in article.text
    assert "launching authority & the Secretary-General" in article.text
    _check_clean(article)


def test_html_title_falls_back_to_og_title_then_title_tag(tmp_path):
    two_h1 = HTML_PAGE.replace("<h2 id=\"obligations\">Obligations of States</h2>", "<h1>Obligations of States</h1>")
    (article,) = parse_file(_write(tmp_path, "page.html", two_h1))
    assert article.title == "Rescue Agreement (1968)"
    no_og = two_h1.replace('<meta property="og:title" content="Rescue Agreement (1968)">', "")
    (article,) = parse_file(_write(tmp_path, "page2.html", no_og))
    assert article.title == "Rescue Agreement | Space Law Encyclopedia"


def test_encyclopedia_page_drops_its_chrome():
    """A page laid out like a MediaWiki article: jump links, menus, language picker, edit links, hidden
    short description, navbox, citation back-links, categories and footer are not content."""
    (article,) = parse_file(FIXTURES / "encyclopedia-page.html")
    assert article.title == "Outer Space Treaty" and article.url == "https://en.wikipedia.org/wiki/Outer_Space_Treaty"
    assert [(s.breadcrumb, s.anchor) for s in article.sections] == [
        (("Outer Space Treaty",), ""),
        (("Outer Space Treaty", "Background"), "Background"),
        (("Outer Space Treaty", "References"), "References"),
    ]
    for chrome in ("Jump to content", "Main page", "68 languages", "View history", "edit", "1967 international treaty",
                   "Space law treaties", "Retrieved from", "Categories", "last edited", "^", "From Wikipedia"):
        assert chrome not in article.text, chrome
    assert "forms the basis of international space law." in article.text
    _check_clean(article)


# ------------------------------------------------------------------------ DOCX, rst, txt


def test_docx_heading_styles_become_sections():
    (article,) = parse_file(FIXTURES / "rescue-agreement.docx")
    assert article.title == "Rescue Agreement Briefing"
    assert article.format == "docx" and article.author == "Fixture Writer"
    assert _crumbs(article) == [
        ("Rescue Agreement Briefing",),
        ("Rescue Agreement Briefing", "Duties Towards Astronauts"),
        ("Rescue Agreement Briefing", "Duties Towards Astronauts", "Search and Rescue"),
        ("Rescue Agreement Briefing", "Return of Space Objects"),
    ]
    assert "Rescue Agreement | 1968" in article.text
    _check_clean(article)


def test_rst_sections_and_targets(tmp_path):
    (article,) = parse_file(_write(tmp_path, "moon.rst", RST))
    assert article.title == "Moon Agreement Primer" and article.format == "rst" and article.author == "Fixture Writer"
    assert [(s.breadcrumb, s.anchor) for s in article.sections] == [
        (("Moon Agreement Primer",), ""),
        (("Moon Agreement Primer", "Background"), "background"),
        (("Moon Agreement Primer", "Status"), "status"),
    ]
    assert "Negotiated in the Committee on the Peaceful Uses" in article.text
    _check_clean(article)


def test_plain_text_keeps_paragraphs(tmp_path):
    (article,) = parse_file(_write(tmp_path, "artemis-accords.txt", "The Artemis Accords were signed in 2020.\n\nThey set principles.\n"))
    assert article.title == "Artemis Accords" and article.format == "text"
    _check_clean(article)


# ------------------------------------------------------------------------ PDF


REGISTRATION_SECTIONS = [
    (("Registration Convention Guide", "Purpose of Registration"), 1),
    (("Registration Convention Guide", "Purpose of Registration", "Information Furnished"), 1),
    (("Registration Convention Guide", "History of the Convention"), 1),
    (("Registration Convention Guide", "Mega-Constellations"), 2),
    (("Registration Convention Guide", "Dispute Settlement"), 2),
    (("Registration Convention Guide", "Dispute Settlement", "Role of the Secretariat"), 2),
    (("Registration Convention Guide", "Registration by Organisations"), 3),
    (("Registration Convention Guide", "Practical Advice for Operators"), 3),
]


@pytest.mark.parametrize("name", ["registration-guide.pdf", "registration-guide-no-outline.pdf"])
def test_two_column_pdf_sections_pages_and_reading_order(name):
    (article,) = parse_file(FIXTURES / name)
    assert article.title == "Registration Convention Guide"
    assert article.format == "pdf" and article.page_count == 3
    assert [(s.breadcrumb, article.page_at(s.start)) for s in article.sections] == REGISTRATION_SECTIONS
    # Running header (date, title) and footer (file URL, "n/3") are gone; the hyphenated word is whole.
    assert "file:" not in article.text and "/3" not in article.text and " PM" not in article.text
    assert "an accident involving a satellite or its debris." in article.text
    # A paragraph that flows from the left column into the right one reads on, in order.
    assert (
        "States may request assistance from other States with monitoring and tracking facilities, which shall respond "
        "to the greatest extent feasible" in article.text
    )
    _check_clean(article)


def test_pdf_page_numbers_follow_a_paragraph_across_pages():
    (article,) = parse_file(FIXTURES / "liability-notes.pdf")
    assert article.title == "Liability for Damage Caused by Space Objects"
    assert article.page_count == 2
    start = article.text.index("The Commission is composed of three members")
    end = article.text.index("consider in good faith.")
    assert article.page_at(start) == 1 and article.page_at(end) == 2
    chunks = chunk_article(article)
    cosmos = next(c for c in chunks if "Cosmos 954 broke up" in c.text)
    assert cosmos.page == 1 and cosmos.section[-1] == "The Cosmos 954 Claim"
    time_limits = next(c for c in chunks if c.section[-1] == "Time Limits")
    assert time_limits.page == 2
    straddling = next(c for c in chunks if c.start <= start < c.end)
    offset = straddling.text.index("consider in good faith.")
    assert straddling.page_at(0) == 1 and straddling.page_at(offset) == 2
    _check_clean(article)


def test_one_size_pdf_takes_bold_lines_as_headings_and_metadata_as_title():
    """Set in one type size like many agency documents: bold lines are the headings, /Title names it,
    and its own running header (a document symbol) and page numbers are dropped."""
    (article,) = parse_file(FIXTURES / "status-note.pdf")
    assert article.title == "Status of the Outer Space Treaties"
    assert _crumbs(article) == [
        ("Status of the Outer Space Treaties",),
        *[("Status of the Outer Space Treaties", name) for name in
          ("Outer Space Treaty", "Rescue Agreement", "Liability Convention", "Registration Convention", "Moon Agreement")],
    ]
    assert "A/AC.105" not in article.text and article.page_count == 2
    assert not re.search(r"(^|\n)\d+(\n|$)", article.text)  # no bare page number line
    assert article.page_at(len(article.text) - 1) == 2
    _check_clean(article)


def test_pdf_set_without_space_characters_keeps_its_word_breaks():
    """Typeset as TeX and many manual generators do: each word placed on its own with a narrow gap and no
    space character, which a fixed three-point tolerance ran together ("Eachlaunchingstatekeeps...")."""
    (article,) = parse_file(FIXTURES / "tight-spacing.pdf")
    assert _crumbs(article) == [
        ("Registry Practice Notes", "National Registers"),
        ("Registry Practice Notes", "Changes After Launch"),
    ]
    assert "Each launching State keeps a national register of the objects it launches into orbit" in article.text
    assert "Secretary-General of the United Nations" in article.text
    assert max(len(word) for word in article.text.split()) < 25
    _check_clean(article)


def test_corrupt_pdf_is_refused_with_its_name(tmp_path):
    data = (FIXTURES / "liability-notes.pdf").read_bytes()
    bad = _write(tmp_path, "corpus/broken.pdf", data[:400])
    with pytest.raises(CorpusError, match=r"broken\.pdf: not a readable PDF"):
        parse_file(bad)
    fake = _write(tmp_path, "corpus/fake.pdf", b"<html>not a pdf</html>")
    with pytest.raises(CorpusError, match=r"fake\.pdf: not a PDF file"):
        parse_file(fake)


def test_a_folder_of_every_format_loads_with_its_own_titles(tmp_path):
    root = tmp_path / "docs"
    root.mkdir()
    for name in ("registration-guide.pdf", "liability-notes.pdf", "rescue-agreement.docx"):
        shutil.copy(FIXTURES / name, root / name)
    _write(root, "rescue.html", HTML_PAGE)
    _write(root, "outer-space-treaty.md", MESSY_MD)
    _write(root, "moon.rst", RST)
    articles = load_corpus(root)
    assert sorted(a.title for a in articles) == [
        "Liability for Damage Caused by Space Objects",
        "Moon Agreement Primer",
        "Outer Space Treaty",
        "Registration Convention Guide",
        "Rescue Agreement",
        "Rescue Agreement Briefing",
    ]


def test_clean_line_spells_out_ligatures_and_drops_soft_hyphens():
    from corpus.builder import clean_line

    assert clean_line("the \ufb01rst  \ufb02ight of a satel\u00adlite\u200b") == "the first flight of a satellite"
