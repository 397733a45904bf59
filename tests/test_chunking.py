"""Chunking properties on generated articles, the real model's window, and ChunkerConfig validation."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from corpus import Article, parse_markdown
from corpus.models import Section
from rag.text.chunking import Chunk, ChunkerConfig, breadcrumb_prefix, chunk_article, embed_text
from core.errors import ConfigError
from rag.text.units import split_sentences
from rag.text.tokens import count_tokens

# ------------------------------------------------------------------------ generated articles

_VOCAB = [
    "space", "treaty", "orbit", "satellite", "diplomacy", "cooperation", "launch", "station", "agency", "mission",
    "Türkiye", "Kıllıoğlu", "naïve", "1957", "2040", "$450", "U.S.", "e.g.", "(ESA)", "ISS", "geopolitical",
    "multilateral", "sovereignty", "Sputnik-1", "internationalisation", "a", "of", "the", "and",
]  # fmt: skip
_HEADING_VOCAB = ["Early", "Modern", "Law", "Orbit", "Economy", "Treaties", "Outlook", "Origins", "Policy", "Cold", "War"]

word = st.sampled_from(_VOCAB)
# A "word" with no spaces that on its own exceeds small caps (forces the between-characters cut).
giant_word = st.integers(60, 400).map(lambda n: ("xqz" * n)[:n])


@st.composite
def sentence(draw, min_words: int = 1, max_words: int = 25) -> str:
    words = draw(st.lists(word, min_size=min_words, max_size=max_words))
    return " ".join([words[0].capitalize(), *words[1:]]) + draw(st.sampled_from([".", ".", "!", "?", ":"]))


@st.composite
def block(draw) -> str:
    kind = draw(st.sampled_from(["para", "para", "para", "list", "bullets", "long", "giant"]))
    if kind == "para":
        sentences = draw(st.lists(sentence(), min_size=1, max_size=12))
        # soft-wrapped: markdown joins these lines into one paragraph line
        return "\n".join(" ".join(sentences[i : i + 3]) for i in range(0, len(sentences), 3))
    if kind == "list":
        items = draw(st.lists(sentence(max_words=15), min_size=1, max_size=8))
        return "\n".join(f"{n}. {item}" for n, item in enumerate(items, start=1))
    if kind == "bullets":
        items = draw(st.lists(sentence(max_words=15), min_size=1, max_size=8))
        return "\n".join(f"- {item}" for item in items)
    if kind == "long":  # one sentence longer than any cap used here
        return draw(sentence(min_words=80, max_words=250))
    return f"{draw(sentence(max_words=5))} {draw(giant_word)} {draw(sentence(max_words=5))}"


@dataclass
class Generated:
    markdown: str
    headings: list[tuple[int, str]]  # level, heading text of every section after the intro


@st.composite
def article_markdown(draw) -> Generated:
    title = " ".join(draw(st.lists(st.sampled_from(_HEADING_VOCAB), min_size=1, max_size=3)))
    parts = [f"# {title}", *draw(st.lists(block(), min_size=1, max_size=3))]
    headings = []
    level = 1
    for n in range(draw(st.integers(0, 5))):
        level = draw(st.integers(2, min(level + 1, 5)))
        text = " ".join(draw(st.lists(st.sampled_from(_HEADING_VOCAB), min_size=1, max_size=4))) + f" {n}"
        headings.append((level, text))
        parts.append("#" * level + " " + text)
        # some sections are far longer than the cap
        parts.extend(draw(st.lists(block(), min_size=1, max_size=6)))
    return Generated("\n\n".join(parts) + "\n", headings)


configs = st.builds(
    lambda max_tokens, frac: ChunkerConfig(max_tokens=max_tokens, overlap_tokens=int(frac * (max_tokens // 2 - 1))),
    st.sampled_from([16, 24, 40, 64, 120, 200]),
    st.floats(0, 1),
)


def char_cap(limit: int):
    """A model-window stand-in that measures characters (a different ruler from cl100k)."""

    def fits(text: str) -> bool:
        return len(text) <= limit

    return fits


# ------------------------------------------------------------------------ the checks


def _section_of(article: Article, chunk: Chunk) -> Section:
    containing = [s for s in article.sections if s.start <= chunk.start and chunk.end <= s.end]
    assert len(containing) == 1, f"chunk {chunk.id} [{chunk.start}, {chunk.end}) is not inside exactly one section"
    return containing[0]


def check_chunks(article: Article, chunks: list[Chunk], config: ChunkerConfig, fits_model=None) -> None:
    text = article.text
    assert chunks, "an article with body text yields chunks"
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert len({c.id for c in chunks}) == len(chunks), "ids are unique"
    by_section: dict[Section, list[Chunk]] = {}
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip() and chunk.text
        assert (chunk.article, chunk.title, chunk.url) == (article.slug, article.title, article.url)
        section = _section_of(article, chunk)
        assert chunk.section == section.breadcrumb
        tokens = count_tokens(chunk.text)
        assert tokens == chunk.n_tokens
        assert tokens <= config.max_tokens, (tokens, chunk.text)
        if fits_model is not None:
            assert fits_model(breadcrumb_prefix(chunk.section) + chunk.text)
            assert embed_text(chunk) == breadcrumb_prefix(chunk.section) + chunk.text
        by_section.setdefault(section, []).append(chunk)

    def fits(start: int, end: int, prefix: str) -> bool:
        if count_tokens(text[start:end]) > config.max_tokens:
            return False
        return fits_model is None or fits_model(prefix + text[start:end])

    for section in article.sections:
        mine = by_section.get(section, [])
        # nothing lost: every non-whitespace character of the body is in some chunk
        covered = bytearray(section.end - section.start)
        for c in mine:
            covered[c.start - section.start : c.end - section.start] = b"\1" * (c.end - c.start)
        lost = [i for i in range(section.start, section.end) if not text[i].isspace() and not covered[i - section.start]]
        assert not lost, f"characters lost from {section.breadcrumb}: {text[lost[0]:lost[0] + 40]!r}"

        # chunks follow reading order and overlap only by a few whole sentences
        for prev, nxt in zip(mine, mine[1:]):
            assert prev.start < nxt.start and prev.end < nxt.end
            assert prev.ordinal + 1 == nxt.ordinal
            if nxt.start < prev.end:
                assert config.overlap_tokens > 0, "no overlap when overlap_tokens is 0"
                assert count_tokens(text[nxt.start : prev.end]) <= config.overlap_tokens

        # boundaries are sentence boundaries, unless a single sentence is over the cap
        spans = split_sentences(text, section.start, section.end)
        starts = [s for s, _ in spans]
        ends = {e for _, e in spans}
        prefix = breadcrumb_prefix(section.breadcrumb)
        for c in mine:
            for pos, is_start in ((c.start, True), (c.end, False)):
                if (pos in starts) if is_start else (pos in ends):
                    continue
                # the sentence holding this position must be one that cannot be a chunk alone
                i = bisect.bisect_right(starts, pos if is_start else pos - 1) - 1
                s, e = spans[i]
                assert s <= c.start and c.end <= e, f"chunk {c.id} cuts a sentence yet spans more than one"
                assert not fits(s, e, prefix), f"chunk {c.id} cuts a sentence that fits the cap: {text[s:e]!r}"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(article_markdown(), configs, st.one_of(st.none(), st.integers(150, 600)))
def test_chunk_properties(generated, config, window):
    article = parse_markdown(generated.markdown, fallback_slug="generated")
    # the parser kept every generated section, with its breadcrumb
    assert len(article.sections) == 1 + len(generated.headings)
    fits_model = None if window is None else char_cap(window)
    if fits_model is not None:
        assume(all(fits_model(breadcrumb_prefix(s.breadcrumb) + "x") for s in article.sections))
    chunks = chunk_article(article, config, fits_model=fits_model)
    check_chunks(article, chunks, config, fits_model)
    # deterministic: the same article gives the same chunks and ids
    assert chunk_article(article, config, fits_model=fits_model) == chunks


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(article_markdown(), article_markdown(), configs)
def test_ids_stable_when_other_text_changes(first, second, config):
    """Editing one article (or one section) leaves every other chunk id as it was."""
    a = parse_markdown(first.markdown, fallback_slug="first")
    b = parse_markdown(second.markdown, fallback_slug="second")
    ids_a = [c.id for c in chunk_article(a, config)]
    ids_b = [c.id for c in chunk_article(b, config)]
    b_changed = parse_markdown(second.markdown + "\nAn appended sentence changes the last section.\n", fallback_slug="second")
    assert [c.id for c in chunk_article(a, config)] == ids_a
    assert not set(ids_a) & set(ids_b)
    # in the edited article, every chunk before the last section keeps its id and place
    last_start = b.sections[-1].start
    before = [c.id for c in chunk_article(b, config) if c.start < last_start]
    after = [c.id for c in chunk_article(b_changed, config) if c.start < last_start]
    assert before == after
    assert [c.id for c in chunk_article(b_changed, config)] != ids_b


def test_bundled_article_default_config(bundled_article):
    config = ChunkerConfig()
    chunks = chunk_article(bundled_article, config)
    check_chunks(bundled_article, chunks, config)
    # every section of the bundled article fits the default cap: one chunk per section
    assert [c.section for c in chunks] == [s.breadcrumb for s in bundled_article.sections]
    assert [c.id for c in chunk_article(bundled_article, config)] == [c.id for c in chunks]


@pytest.mark.parametrize("max_tokens, overlap", [(16, 0), (24, 8), (40, 16), (64, 31)])
def test_bundled_article_small_caps(bundled_article, max_tokens, overlap):
    config = ChunkerConfig(max_tokens=max_tokens, overlap_tokens=overlap)
    chunks = chunk_article(bundled_article, config, fits_model=char_cap(260))
    check_chunks(bundled_article, chunks, config, char_cap(260))
    assert len(chunks) > len(bundled_article.sections)


def test_overlap_repeats_whole_sentences():
    sentences = [f"Sentence number {n} talks about orbital treaties and launches." for n in range(30)]
    article = parse_markdown("# Overlap\n\n" + " ".join(sentences) + "\n")
    config = ChunkerConfig(max_tokens=60, overlap_tokens=25)
    chunks = chunk_article(article, config)
    check_chunks(article, chunks, config)
    assert len(chunks) > 3
    overlapping = [(p, n) for p, n in zip(chunks, chunks[1:]) if n.start < p.end]
    assert overlapping, "a long paragraph repeats sentences between chunks"
    for prev, nxt in overlapping:
        shared = article.text[nxt.start : prev.end]
        assert shared.startswith("Sentence number") and shared.endswith("launches.")


def test_ids_are_content_hashes_stable_across_sections_edit():
    base = "# T\n\n## One\n\nAlpha text here.\n\n## Two\n\nBeta text here.\n"
    edited = base.replace("Beta text here.", "Beta text changed.")
    a, b = parse_markdown(base, fallback_slug="t"), parse_markdown(edited, fallback_slug="t")
    ca, cb = chunk_article(a), chunk_article(b)
    assert ca[0].id == cb[0].id  # section One untouched
    assert ca[1].id != cb[1].id
    assert ca[0].id.startswith("t-")


def test_same_text_twice_in_a_section_gets_distinct_stable_ids():
    text = "# T\n\n" + "\n\n".join(["Repeated paragraph about orbital treaties and launch sites here."] * 3) + "\n"
    article = parse_markdown(text, fallback_slug="t")
    config = ChunkerConfig(max_tokens=16, overlap_tokens=0)
    ids = [c.id for c in chunk_article(article, config)]
    assert len(ids) == len(set(ids)) == 3
    assert ids == [c.id for c in chunk_article(article, config)]


def test_breadcrumb_filling_the_window_is_a_config_error():
    article = Article(slug="x", title="Title " * 50, text="Body.", sections=(Section(("Title " * 50,), 0, 5),))
    with pytest.raises(ConfigError, match="breadcrumb"):
        chunk_article(article, fits_model=char_cap(100))


# ------------------------------------------------------------------------ the real model's window


def _long_synthetic_article() -> Article:
    # Text where WordPiece needs far more pieces than cl100k has tokens: Cyrillic titles, URLs,
    # dotted acronyms and formulas, as in a references list. cl100k's cap alone would overflow the model.
    words = (
        "Космическая дипломатия и международное право https://cdn.example.org/media/2025/p1HubEUK6idFP3.png "
        "U.S.-E.U. (ESA)/(TUA) x^2+y^2=z^2 Kıllıoğlu Приветствую космос"
    ).split()
    sentences = [" ".join(words[(i + j) % len(words)] for j in range(14)) + "." for i in range(120)]
    paragraphs = [" ".join(sentences[i : i + 6]) for i in range(0, 120, 6)]
    giant = " ".join(words * 30)  # one sentence of several hundred words
    markdown = (
        "# Hypersonic Diplomacy in Orbit\n\n## Geopolitical and Economic Dimensions of Space Diplomacy\n\n"
        "### Türkiye's Space Diplomacy Strategies and International Agreements\n\n"
        + "\n\n".join(paragraphs)
        + "\n\n"
        + giant
        + "\n"
    )
    return parse_markdown(markdown, fallback_slug="synthetic")


@pytest.mark.model
def test_real_tokenizer_never_truncates(bundled_article, real_encoder):
    assert real_encoder.max_input_tokens == 256
    config = ChunkerConfig()
    synthetic = _long_synthetic_article()
    # Without the model callback some chunk would overflow the window: the check below is not vacuous.
    unchecked = chunk_article(synthetic, config)
    assert max(real_encoder.count_tokens(embed_text(c)) for c in unchecked) > 256
    for article in (bundled_article, synthetic):
        chunks = chunk_article(article, config, fits_model=real_encoder.fits)
        check_chunks(article, chunks, config, real_encoder.fits)
        for chunk in chunks:
            assert real_encoder.count_tokens(embed_text(chunk)) <= 256, chunk.id
    # the real tokenizer counts special tokens ([CLS], [SEP])
    assert real_encoder.count_tokens("") == 2


# ------------------------------------------------------------------------ config validation


@pytest.mark.parametrize(
    "max_tokens, overlap",
    [(15, 0), (0, 0), (-5, 0), (200, 100), (200, 150), (200, -1), (16, 8)],
)
def test_chunker_config_rejects_bad_values(max_tokens, overlap):
    with pytest.raises(ConfigError):
        ChunkerConfig(max_tokens=max_tokens, overlap_tokens=overlap)


@pytest.mark.parametrize("max_tokens, overlap", [(16, 0), (16, 7), (200, 32), (200, 99)])
def test_chunker_config_accepts_good_values(max_tokens, overlap):
    config = ChunkerConfig(max_tokens=max_tokens, overlap_tokens=overlap)
    assert (config.max_tokens, config.overlap_tokens) == (max_tokens, overlap)
