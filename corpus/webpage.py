"""HTML pages through Beautiful Soup: main content only, ``h1``-``h6`` as sections, ids as anchors.

The main content is the page's ``<main>`` (or ``<article>``, or ``role="main"``), else its body,
with navigation, banners, footers, asides, forms, scripts and cookie or consent notices removed.
Beautiful Soup keeps every element's ``id``, which is what a citation's anchor links to.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

from corpus.builder import DocumentBuilder, clean_line, plausible_title
from corpus.markdown import ArticleFormatError
from corpus.models import Article

_DROP_TAGS = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "iframe",
              "svg", "canvas", "button", "select", "input", "textarea", "dialog", "object", "embed", "head")
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "dialog", "alertdialog", "search", "menu", "menubar"}
# Class or id words of page furniture: cookie and consent notices, menus, share bars, edit links.
_FURNITURE_RE = re.compile(
    r"(^|[\s_-])(cookie|consent|gdpr|banner|navbar|navbox|nav|navigation|menu|breadcrumbs?|sidebar|share|social|"
    r"newsletter|subscribe|skip-?link|mw-editsection|mw-jump-link|noprint|advert|ads?|popup|modal|toc|catlinks|"
    r"printfooter|footer|portlet|dropdown|toolbar|backlink)($|[\s_-])",
    re.I,
)
_HIDDEN_STYLE_RE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_BLOCKS = {"p", "li", "dt", "dd", "blockquote", "pre", "figcaption", "caption", "address", "summary"}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_CONTAINERS = {"div", "section", "article", "main", "body", "ul", "ol", "dl", "table", "tbody", "thead", "tfoot",
               "figure", "details", "center", "html", "hgroup", "header"}


def _is_furniture(tag: Tag) -> bool:
    if tag.name == "header" and tag.find("h1") is not None and tag.find_parent(["article", "main"]) is not None:
        return False  # an article's own header holds its title
    if tag.name in _DROP_TAGS:
        return True
    attrs = tag.attrs or {}
    if str(attrs.get("role", "")).lower() in _DROP_ROLES or str(attrs.get("aria-hidden", "")).lower() == "true":
        return True
    if "hidden" in attrs or _HIDDEN_STYLE_RE.search(str(attrs.get("style", ""))):
        return True
    words = " ".join([*(attrs.get("class") or []), str(attrs.get("id", ""))])
    return bool(words and _FURNITURE_RE.search(words))


def _strip(root: Tag) -> None:
    for comment in root.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in list(root.find_all(True)):
        if tag.decomposed or tag.parent is None:
            continue
        if tag is not root and _is_furniture(tag):
            tag.decompose()
    for sup in root.select("sup.reference"):  # footnote markers such as [12]
        sup.decompose()


def _main(soup: BeautifulSoup) -> Tag:
    for selector in ("main", "[role=main]", "article", "#content", "#main", "body"):
        found = soup.select(selector)
        if len(found) == 1 or (found and selector == "body"):
            return found[0]
    return soup


def _text(tag: Tag) -> str:
    """Visible text of an inline run: line breaks kept for <br>, everything else one line."""
    parts: list[str] = []
    for node in tag.descendants:
        if isinstance(node, NavigableString):
            parts.append(str(node))
        elif node.name == "br":
            parts.append("\n")
    return "\n".join(clean_line(line) for line in "".join(parts).split("\n") if clean_line(line))


def _anchor(tag: Tag) -> str:
    """The id a link to this heading would use: its own, a child's (MediaWiki), or its section's."""
    if tag.get("id"):
        return str(tag["id"])
    inner = tag.find(id=True)
    if inner is not None:
        return str(inner["id"])
    parent = tag.parent
    if parent is not None and parent.name == "section" and parent.get("id") and parent.find(list(_HEADINGS)) is tag:
        return str(parent["id"])
    return ""


def _walk(node: Tag, builder: DocumentBuilder, title_heading: Tag | None) -> None:
    inline: list[str] = []

    def flush() -> None:
        text = clean_line("".join(inline))
        inline.clear()
        if text:
            builder.paragraph(text)

    for child in node.children:
        if isinstance(child, NavigableString):
            inline.append(str(child))
            continue
        if not isinstance(child, Tag):
            continue
        name = child.name
        if name in _HEADINGS:
            flush()
            if child is not title_heading:
                builder.heading(_text(child), _HEADINGS[name], _anchor(child))
        elif name == "tr":
            flush()
            cells = [_text(cell).replace("\n", " ") for cell in child.find_all(["th", "td"], recursive=False)]
            builder.paragraph(" | ".join(cell for cell in cells if cell))
        elif name in _BLOCKS and not child.find(list(_BLOCKS | set(_HEADINGS) | {"table"})):
            flush()
            builder.paragraph(_text(child))
        elif name in _BLOCKS or name in _CONTAINERS:
            flush()
            _walk(child, builder, title_heading)
        elif name == "img":
            continue
        else:
            inline.append(child.get_text())
    flush()


def _meta(soup: BeautifulSoup, *names: str) -> str:
    for name in names:
        tag = soup.find("meta", attrs={"property": name}) or soup.find("meta", attrs={"name": name})
        if tag is not None and tag.get("content"):
            return clean_line(str(tag["content"]))
    return ""


def parse_html(data: bytes, *, source_path: str = "", fallback_title: str, slug: str) -> Article:
    """One HTML page as an article. Title: the single ``h1``, else ``og:title`` / ``<title>``, else the file name."""
    soup = BeautifulSoup(data, "html.parser")
    head_title = plausible_title(_meta(soup, "og:title") or (soup.title.get_text() if soup.title else ""))
    url = _meta(soup, "og:url")
    canonical = soup.find("link", rel="canonical")
    if canonical is not None and canonical.get("href"):
        url = str(canonical["href"])
    language = str((soup.html or {}).get("lang", "") if soup.html else "")
    description = _meta(soup, "og:description", "description")
    author = _meta(soup, "author", "article:author")
    root = _main(soup)
    _strip(root)
    h1s = root.find_all("h1")
    title_heading = h1s[0] if len(h1s) == 1 and _text(h1s[0]) else None
    title = _text(title_heading).replace("\n", " ") if title_heading is not None else head_title or fallback_title
    builder = DocumentBuilder(title)
    _walk(root, builder, title_heading)
    if not builder.has_text:
        raise ArticleFormatError("the page has no readable text in its main content")
    return builder.build(
        slug=slug, source_path=source_path, format="html", url=url, language=language,
        description=description, author=author,
    )
