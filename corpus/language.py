"""Per-section language: detect it with ``langdetect`` and split a section where a translation begins.

A file that carries its English text followed by a translation under the same heading becomes two
sections with the same breadcrumb and their own languages, so ``filters`` can keep one language.
Only paragraphs long enough to be detected reliably can start a new language; short ones (list
items, names, figures) stay with their neighbours, so a monolingual article is never cut up.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

from corpus.models import Article, Section

#: Paragraphs shorter than this take the language of the text around them.
MIN_DETECT_CHARS = 120
#: A paragraph changes the section's language only with at least this probability.
MIN_PROBABILITY = 0.90

#: Names people write in front matter or filters, to ISO 639-1 codes (detected languages are codes).
LANGUAGE_NAMES = {
    "english": "en", "french": "fr", "français": "fr", "francais": "fr", "spanish": "es", "español": "es",
    "german": "de", "deutsch": "de", "russian": "ru", "русский": "ru", "chinese": "zh", "arabic": "ar",
    "turkish": "tr", "türkçe": "tr", "italian": "it", "portuguese": "pt", "japanese": "ja", "dutch": "nl",
}


def language_code(value: str) -> str:
    """``"English"`` / ``"en"`` / ``"EN-us"`` -> ``"en"``; unknown names are kept lower-cased."""
    value = value.strip().casefold()
    if value in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[value]
    return value.split("-")[0].split("_")[0] if value else ""


@lru_cache(maxsize=1)
def _detect_langs():
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0  # langdetect samples at random; a fixed seed makes it deterministic
    return detect_langs


def detect(text: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of ``text``, or ("", 0.0) when nothing can be told."""
    from langdetect.lang_detect_exception import LangDetectException

    try:
        best = _detect_langs()(text)[0]
    except (LangDetectException, IndexError):
        return "", 0.0
    return best.lang.split("-")[0], float(best.prob)  # zh-cn, zh-tw -> zh


def _paragraphs(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(start + m.start(), start + m.end()) for m in re.finditer(r"[^\n]+(?:\n[^\n]+)*", text[start:end])]


def _runs(article: Article, section: Section) -> list[tuple[int, int, str]]:
    """Consecutive runs of paragraphs in one language: (start, end, code)."""
    runs: list[list] = []
    for p_start, p_end in _paragraphs(article.text, section.start, section.end):
        chunk = article.text[p_start:p_end]
        code, prob = detect(chunk) if len(chunk) >= MIN_DETECT_CHARS else ("", 0.0)
        if not runs or (code and prob >= MIN_PROBABILITY and runs[-1][2] and code != runs[-1][2]):
            runs.append([p_start, p_end, code if prob >= MIN_PROBABILITY else ""])
        else:
            runs[-1][1] = p_end
            if not runs[-1][2] and prob >= MIN_PROBABILITY:
                runs[-1][2] = code
    if not runs:
        return []
    runs[0][0] = section.start
    runs[-1][1] = section.end
    return [tuple(r) for r in runs]


def annotate_languages(article: Article, default: str = "") -> Article:
    """The article with each section's language set (split where the language changes)."""
    fallback = language_code(default or article.language)
    sections: list[Section] = []
    for section in article.sections:
        runs = _runs(article, section)
        if len(runs) <= 1:
            code = (runs[0][2] if runs else "") or fallback
            if not code:
                code, prob = detect(article.text[section.start : section.end])
                code = code if prob >= 0.5 else ""
            sections.append(replace(section, language=code))
            continue
        for start, end, code in runs:
            sections.append(replace(section, start=start, end=end, language=code or fallback))
    return replace(article, sections=tuple(sections))
