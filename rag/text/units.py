"""Answer units, the quotable pieces of a passage (sentences, whole list items, a list with the sentence
that introduces it), and the sentence boundaries they are made of, as character offsets.

Quotes in answers must be exact substrings of passages, so the splitter never rewrites text:
it returns ``(start, end)`` spans into the string it was given, trimmed of surrounding space.
Lines are hard boundaries (list items stay separate); inside a line a sentence ends at
``.``, ``!`` or ``?`` (and closing quotes or brackets) followed by space and a capital or digit,
unless the word before the stop is an abbreviation or an initial ("U.S.", "K.", "e.g.").
"""

from __future__ import annotations

import re

_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof sr jr st mt ft vs etc al fig figs eq eqs no nos vol vols pp ed eds
    inc ltd co corp dept univ approx est ca cf e.g i.e viz jan feb mar apr jun jul aug sep
    sept oct nov dec gen col lt sgt capt cmdr adm gov sen rep rev hon pres ph.d
    """.split()
)
_STOP_RE = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s+[\"'\u201c\u2018(\[]?[^\W_a-z])")
_WORD_BEFORE_RE = re.compile(r"(\S+)$")
_LIST_MARKER_RE = re.compile(r"\s*(?:\d{1,3}|[ivxlcdm]{1,5}|[a-zA-Z])$")


def _is_abbreviation(line: str, stop_start: int, stop: str) -> bool:
    if not stop.startswith("."):
        return False
    m = _WORD_BEFORE_RE.search(line, 0, stop_start)
    if not m:
        return True
    word = m.group(1).lstrip("\"'(\u201c\u2018[")
    lowered = word.lower()
    if lowered in _ABBREVIATIONS:
        return True
    # Initials and dotted acronyms: "K.", "U.S.", "e.g."
    if re.fullmatch(r"(?:[^\W\d_]\.)*[^\W\d_]", word):
        return len(word.replace(".", "")) <= 3 and (len(word) == 1 or "." in word)
    # A list marker at the start of a line ("1." or "a.") is not a sentence.
    if _LIST_MARKER_RE.fullmatch(line[:stop_start]):
        return True
    return False


def _trimmed(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]``, as absolute offsets into ``text``."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    line_start = start
    while line_start < end:
        newline = text.find("\n", line_start, end)
        line_end = end if newline == -1 else newline
        line = text[line_start:line_end]
        cursor = 0
        for m in _STOP_RE.finditer(line):
            if _is_abbreviation(line, m.start(), m.group()):
                continue
            span = _trimmed(text, line_start + cursor, line_start + m.end())
            if span:
                spans.append(span)
            cursor = m.end()
        span = _trimmed(text, line_start + cursor, line_end)
        if span:
            spans.append(span)
        line_start = line_end + 1
    return spans


_LIST_ITEM_RE = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*\u2022])\s+")


def answer_units(text: str, max_item_chars: int = 400, max_list_lines: int = 8) -> list[tuple[int, int]]:
    """Spans an answer may quote, in reading order (they may overlap).

    Sentences, except that a list item short enough to read as one statement stays whole
    (a reference entry, "3. Space Law: ..."), and a sentence that introduces a list
    ("... four key pillars:") also forms a unit together with the list it introduces.
    """
    lines: list[tuple[int, int]] = []
    pos = 0
    for line in text.split("\n"):
        lines.append((pos, pos + len(line)))
        pos += len(line) + 1
    units: list[tuple[int, int]] = []
    for i, (ls, le) in enumerate(lines):
        span = _trimmed(text, ls, le)
        if span is None:
            continue
        is_item = bool(_LIST_ITEM_RE.match(text[ls:le]))
        sentences = split_sentences(text, ls, le)
        if is_item and span[1] - span[0] <= max_item_chars:
            units.append(span)
        else:
            units.extend(sentences)
        if sentences and text[sentences[-1][0] : sentences[-1][1]].endswith(":"):
            end = None
            taken = 0
            for ns, ne in lines[i + 1 :]:
                if not text[ns:ne].strip():
                    if taken:
                        break
                    continue
                if not _LIST_ITEM_RE.match(text[ns:ne]) or taken >= max_list_lines:
                    break
                end = _trimmed(text, ns, ne)[1]
                taken += 1
            if end is not None:
                # the introducing sentence alone ("... include:") answers nothing; quote it with its list
                if not is_item or span[1] - span[0] > max_item_chars:
                    units.remove(sentences[-1])
                units.append((sentences[-1][0], end))
    return sorted(set(units))
