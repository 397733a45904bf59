"""Parsing articles: front matter, clean text, links, images, sections; plain .md, .txt, BEIR jsonl; errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corpus import Category, CorpusError, load_corpus, parse_file, parse_markdown
from corpus.markdown import ArticleFormatError
from rag.text.chunking import chunk_article

TITLE = "Space Diplomacy"
HIST = "Historical Development of Space Diplomacy"

EXPECTED_BREADCRUMBS = [
    (TITLE,),
    (TITLE, "The Definition and Significance of Space Diplomacy"),
    (TITLE, HIST),
    (TITLE, HIST, "The Cold War Era and the Emergence of Space Diplomacy"),
    (TITLE, HIST, "Post-Cold War Evolution of Space Diplomacy"),
    (TITLE, HIST, "Space Diplomacy and International Law"),
    (TITLE, "Geopolitical and Economic Dimensions of Space Diplomacy"),
    (TITLE, "Türkiye's Space Diplomacy Strategies"),
    (TITLE, "Future Prospects of Space Diplomacy"),
    (TITLE, "Academic Sources and References"),
]

MARKUP = ("](", "![", "<!--", "-->", "**", "\\*")


# ------------------------------------------------------------------------ the bundled article


def test_front_matter_metadata(bundled_article):
    a = bundled_article
    assert a.title == "Space Diplomacy"
    assert a.slug == "space-diplomacy"
    assert a.url == "/detay/space-diplomacy"
    assert a.author == "Ahsen Karakaş"
    assert a.language == "English"
    assert a.created_at == "2025-02-25T14:04:35.859990+03:00"
    assert a.updated_at == "2025-04-17T11:44:20.391453+03:00"
    assert isinstance(a.created_at, str) and isinstance(a.updated_at, str)
    assert a.description.startswith("Navigate the cosmos of international relations")


def test_nested_entity_categories_and_tags(bundled_article):
    assert bundled_article.categories == (
        Category("Law", "hukuk", "/kategori/hukuk"),
        Category(
            "Politics And International Relations",
            "siyaset-ve-uluslararasi-iliskiler",
            "/kategori/siyaset-ve-uluslararasi-iliskiler",
        ),
        Category("Aviation And Space", "havacilik-ve-uzay", "/kategori/havacilik-ve-uzay"),
    )
    assert bundled_article.tags == (
        "Space Economy",
        "Geopolitical Competition",
        "Space Diplomacy",
        "Space Law",
        "International Cooperation",
    )


def test_metadata_is_json_ready(bundled_article):
    meta = json.loads(json.dumps(bundled_article.metadata()))
    assert meta["categories"][0] == {"name": "Law", "slug": "hukuk", "url": "/kategori/hukuk"}
    assert meta["created_at"] == "2025-02-25T14:04:35.859990+03:00"
    assert "text" not in meta


def test_links_keep_anchor_text_and_exact_offsets(bundled_article):
    a = bundled_article
    by_text = {link.text: link for link in a.links}
    assert set(by_text) == {"has", "at", "the space race", "Yuri Gagarin", "steps", "had", "Mars", "an"}
    assert by_text["Yuri Gagarin"].target == "/en/detay/yuri-gagarin-2/llms.txt"
    assert by_text["the space race"].target == "/en/detay/the-space-race-2/llms.txt"
    for link in a.links:
        assert a.text[link.start : link.end] == link.text
    assert "cosmonaut Yuri Gagarin in 1961" in a.text
    assert "llms.txt" not in a.text


def test_image_and_caption_leave_the_text(bundled_article):
    a = bundled_article
    assert len(a.images) == 1
    image = a.images[0]
    assert image.src == "https://cdn.kureansiklopedi.com/media/uploads/2025/02/25/p1HubEUK6idFP3tXUgG8L9qgapXfdEYq.png"
    assert image.alt == "Image"
    assert image.caption == "Space Diplomacy (Created by AI)"
    assert "Created by AI" not in a.text
    assert "cdn.kureansiklopedi" not in a.text
    # The image stood at the end of the Cold War section's body.
    cold_war = a.sections[3]
    assert image.offset == cold_war.end


def test_comments_and_escaped_bold_are_removed(bundled_article):
    text = bundled_article.text
    assert "CONTEXT" not in text
    assert "Article Content for" not in text
    assert "collaborations with the United Nations Office for Outer Space Affairs (UNOOSA)." in text
    assert "surpassed $450 billion and" in text  # **$450 billion** lost its markup, kept its words
    for marker in MARKUP:
        assert marker not in text, marker


def test_numbered_lists_stay_one_item_per_line(bundled_article):
    lines = bundled_article.text.split("\n")
    assert "1. Space Law: International treaties and regulatory frameworks governing states' activities in space." in lines
    assert "2. Security Policies: Preventing military competition in space and managing potential conflicts." in lines
    assert any(line.startswith("3. 1998 ISS Agreement: The treaty governing") for line in lines)
    assert any(line.startswith("4. Moroz, Andrii, and Nataliia Borotkanych.") for line in lines)


def test_all_ten_sections_and_breadcrumbs(bundled_article):
    a = bundled_article
    assert [s.breadcrumb for s in a.sections] == EXPECTED_BREADCRUMBS
    assert not any("Article Content" in part for s in a.sections for part in s.breadcrumb)
    assert a.text[a.sections[0].start :].startswith("Space diplomacy is defined as the diplomatic processes")
    assert a.text[a.sections[3].start :].startswith("The launch of the Sputnik-1 satellite")
    assert a.text[a.sections[-1].start : a.sections[-1].end].endswith("Language – Culture – Politics, 2023.")


def test_sections_are_ordered_disjoint_trimmed_bodies(bundled_article):
    a = bundled_article
    previous_end = 0
    for section in a.sections:
        body = a.text[section.start : section.end]
        assert previous_end <= section.start < section.end <= len(a.text)
        assert body == body.strip() and body
        # the heading is in the text just before the body, not inside it
        assert a.text[: section.start].endswith(section.breadcrumb[-1] + "\n\n")
        assert not body.startswith(section.breadcrumb[-1])
        previous_end = section.end


def test_no_markup_in_any_chunk(bundled_article):
    for chunk in chunk_article(bundled_article):
        assert chunk.text == bundled_article.text[chunk.start : chunk.end]
        for marker in MARKUP:
            assert marker not in chunk.text, (marker, chunk.id)


# ------------------------------------------------------------------------ inline markup


def test_emphasis_removed_but_snake_case_and_arithmetic_survive():
    a = parse_markdown(
        "# T\n\nSome **bold**, *em*, _em too_ and __strong__ words. The variable snake_case_name holds 2*3*4 = 24; "
        "also a * b and 5 * 3 stay.\n"
    )
    assert a.text.split("\n\n")[1] == (
        "Some bold, em, em too and strong words. The variable snake_case_name holds 2*3*4 = 24; also a * b and 5 * 3 stay."
    )


def test_escaped_markup_characters_stay_literal():
    a = parse_markdown("# T\n\nPrices in \\*stars\\* and \\_under\\_ and \\[brackets\\] stay; \\*\\*bold\\*\\* goes.\n")
    body = a.text[a.sections[0].start : a.sections[0].end]
    assert body == "Prices in *stars* and _under_ and [brackets] stay; bold goes."


def test_inline_image_and_link_offsets_in_a_soft_wrapped_paragraph():
    raw = "# T\n\nSee [the first](http://a/1) and\n[the second](http://a/2 \"title\") links ![pic](p.png) here.\n"
    a = parse_markdown(raw)
    assert a.text.split("\n\n")[1] == "See the first and the second links here."
    assert [(link.text, link.target) for link in a.links] == [("the first", "http://a/1"), ("the second", "http://a/2")]
    for link in a.links:
        assert a.text[link.start : link.end] == link.text
    assert [(i.src, i.alt) for i in a.images] == [("p.png", "pic")]


def test_html_comment_spanning_lines_and_tags_removed():
    a = parse_markdown("# T\n\nBefore <!-- a\nmulti-line\ncomment --> after <b>bold</b> <br/> end.\n")
    assert a.text.split("\n\n")[1] == "Before after bold end."


def test_heading_links_and_container_heading():
    a = parse_markdown("# T\n\n## Contents\n\nIntro text.\n\n## [Linked](http://x) heading\n\nBody.\n")
    assert [s.breadcrumb for s in a.sections] == [("T",), ("T", "Linked heading")]
    assert a.links[0].text == "Linked" and a.text[a.links[0].start : a.links[0].end] == "Linked"


# ------------------------------------------------------------------------ other formats


def test_plain_markdown_title_from_first_heading(tmp_path: Path):
    path = tmp_path / "some-file.md"
    path.write_text("# The Real Title\n\nFirst paragraph.\n\n## Part\n\nSecond.\n", encoding="utf-8")
    (a,) = parse_file(path)
    assert a.title == "The Real Title"
    assert a.slug == "some-file"
    assert [s.breadcrumb for s in a.sections] == [("The Real Title",), ("The Real Title", "Part")]
    assert a.categories == () and a.tags == () and a.url == ""


def test_plain_markdown_without_heading_takes_title_from_file_name(tmp_path: Path):
    path = tmp_path / "orbital_debris-notes.md"
    path.write_text("Just a paragraph about debris.\n\nAnd another one.\n", encoding="utf-8")
    (a,) = parse_file(path)
    assert a.title == "Orbital Debris Notes"  # a readable form of the file name
    assert a.slug == "orbital_debris-notes"
    assert a.sections[0].breadcrumb == ("Orbital Debris Notes",)
    assert a.text == "Just a paragraph about debris.\n\nAnd another one."


def test_txt_file_paragraphs(tmp_path: Path):
    path = tmp_path / "moon-landing.txt"
    path.write_text("  Apollo 11 landed   in 1969.\nIt was crewed.\n\n\n**Not** markdown [here](x).\n", encoding="utf-8")
    (a,) = parse_file(path)
    assert a.title == "Moon Landing"
    assert a.slug == "moon-landing"
    assert a.text == "Apollo 11 landed in 1969.\nIt was crewed.\n\n**Not** markdown [here](x)."
    assert a.sections[0].start == 0 and a.sections[0].end == len(a.text)


def test_beir_jsonl(tmp_path: Path):
    path = tmp_path / "corpus.jsonl"
    lines = [
        {"_id": "d1", "title": "First", "text": "Alpha  beta\ngamma."},
        {"_id": "d2", "title": "", "text": "No title here."},
        {"_id": "d3", "title": "Only title", "text": ""},
        {"_id": "d4", "title": "", "text": ""},
    ]
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n", encoding="utf-8")
    articles = parse_file(path)
    assert [a.slug for a in articles] == ["d1", "d2", "d3"]
    assert articles[0].title == "First" and articles[0].text == "Alpha beta gamma."
    assert articles[1].title == "d2"
    assert articles[2].text == "Only title"
    for a in articles:
        (section,) = a.sections
        assert (section.start, section.end) == (0, len(a.text))


def test_load_corpus_mixes_formats_in_stable_order(tmp_path: Path, write_corpus):
    root = write_corpus(
        {
            "b.md": "# Bee\n\nBuzz.\n",
            "a.txt": "Ants.\n",
            "sub/c.jsonl": json.dumps({"_id": "c1", "title": "Cee", "text": "Sea."}) + "\n",
            ".hidden/x.md": "# Hidden\n\nNo.\n",
            "notes.odt": "ignored",  # not a supported type
        }
    )
    assert [a.slug for a in load_corpus(root)] == ["a", "b", "c1"]


# ------------------------------------------------------------------------ errors


BAD_FILES = {
    "bad-yaml.md": ("---\ntitle: [unclosed\n---\n# X\n\nBody.\n", "invalid YAML front matter"),
    "latin1.md": (b"# Caf\xe9\n\nBody.\n", "not valid UTF-8"),
    "empty.md": ("", "file is empty"),
    "blank.md": ("  \n\n\t\n", "file is empty"),
    "unclosed.md": ("---\ntitle: X\n\n# X\n\nBody.\n", "never closed"),
    "list-front-matter.md": ("---\n- a\n- b\n---\n# X\n\nBody.\n", "must be a YAML mapping"),
    "no-body.md": ("---\ntitle: X\n---\n# X\n", "no body text"),
    "bad.jsonl": ('{"_id": "1", "text": "ok"}\n{not json}\n', "line 2: not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_raises_corpus_error_naming_file_and_reason(tmp_path: Path, name: str):
    content, reason = BAD_FILES[name]
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        list(parse_file(path))
    assert info.value.path == str(path)
    assert reason in info.value.reason
    assert str(path) in str(info.value) and reason in str(info.value)


def test_bad_yaml_reports_line(tmp_path: Path):
    path = tmp_path / "x.md"
    path.write_text("---\ntitle: ok\ntags: [a, b\n---\nBody.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"x\.md: invalid YAML front matter at line \d+"):
        parse_file(path)


def test_load_corpus_raises_on_bad_file_and_skip_bad_warns(write_corpus):
    root = write_corpus({"good.md": "# Good\n\nFine text.\n", "zbad.md": "---\ntitle: [oops\n---\nBody.\n"})
    with pytest.raises(CorpusError) as info:
        load_corpus(root)
    assert "zbad.md" in str(info.value) and "invalid YAML" in str(info.value)

    warnings: list[str] = []
    articles = load_corpus(root, skip_bad=True, warn=warnings.append)
    assert [a.slug for a in articles] == ["good"]
    assert len(warnings) == 1
    assert "zbad.md" in warnings[0] and "invalid YAML" in warnings[0]


def test_skip_bad_with_every_file_bad_is_an_error(write_corpus):
    root = write_corpus({"a.md": "", "b.md": b"\xff\xfe\x00"})
    warnings: list[str] = []
    with pytest.raises(CorpusError, match="no usable articles"):
        load_corpus(root, skip_bad=True, warn=warnings.append)
    assert len(warnings) == 2


def test_duplicate_slugs_are_an_error_even_with_skip_bad(write_corpus):
    root = write_corpus(
        {"one.md": "---\nslug: same\n---\n# One\n\nText one.\n", "two.md": "---\nslug: same\n---\n# Two\n\nText two.\n"}
    )
    for skip_bad in (False, True):
        with pytest.raises(CorpusError) as info:
            load_corpus(root, skip_bad=skip_bad, warn=lambda m: None)
        assert "two.md" in str(info.value)
        assert "'same'" in str(info.value) and "one.md" in str(info.value)


def test_missing_and_empty_corpus_folders(tmp_path: Path):
    with pytest.raises(CorpusError, match="no such file or folder"):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.odt").write_text("x")
    with pytest.raises(CorpusError, match="no articles found"):
        load_corpus(tmp_path / "empty")


# ------------------------------------------------------------------------ property: markup never leaks

_WORD = st.sampled_from(
    ["alpha", "beta", "snake_case", "2*3", "a * b", "x_y_z", "Türkiye", "$450", "U.S.", "(ESA)", "e.g.", "don't", "5-6"]
)
_LINK = st.builds(lambda a, t: f"[{a}](/en/detay/{t}/llms.txt)", _WORD, st.sampled_from(["x", "y-2", "z"]))
_INLINE = st.one_of(
    _WORD,
    _LINK,
    _WORD.map(lambda w: f"**{w}**"),
    _WORD.map(lambda w: f"*{w}*"),
    _WORD.map(lambda w: f"_{w}_"),
    _LINK.map(lambda link: f"**{link}**"),
    _WORD.map(lambda w: f"`{w}`"),
    st.just("\\*\\*escaped\\*\\*"),
    st.just("<!-- a comment -->"),
)
_LINE = st.lists(_INLINE, min_size=1, max_size=8).map(" ".join)
_BLOCK = st.one_of(
    st.lists(_LINE, min_size=1, max_size=3).map("\n".join),
    st.lists(_LINE, min_size=1, max_size=4).map(lambda ls: "\n".join(f"{i}. {line}" for i, line in enumerate(ls, 1))),
    st.lists(_LINE, min_size=1, max_size=4).map(lambda ls: "\n".join(f"- {line}" for line in ls)),
    st.lists(_WORD, min_size=1, max_size=4).map(lambda ws: f"![Image](https://cdn.example/x.png)\n*{' '.join(ws)}*"),
    st.builds(lambda level, h: f"{'#' * level} {h}", st.integers(2, 5), _LINE),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_BLOCK, min_size=1, max_size=8))
def test_generated_markdown_link_offsets_and_no_markup(blocks):
    raw = "# Title\n\n" + "\n\n".join(blocks) + "\n"
    try:
        article = parse_markdown(raw)
    except ArticleFormatError as exc:
        assert "no body text" in str(exc)  # only headings and images were drawn
        return
    for link in article.links:
        assert article.text[link.start : link.end] == link.text
        assert link.target.startswith("/en/detay/")
    for marker in ("](", "![", "<!--", "**", "\\*", "llms.txt", "cdn.example"):
        assert marker not in article.text, marker
    assert len(article.links) == raw.count("](/en/detay/")
    for section in article.sections:
        body = article.text[section.start : section.end]
        assert body and body == body.strip()
