"""Browser origins allowed to call the API (CORS), parsed from ``RAG_CORS_ORIGINS``.

An origin is what a browser sends in its ``Origin`` header: ``scheme://host[:port]`` and nothing
else. Normalising here (lower case, no trailing slash, default ports dropped) means an operator's
``https://Example.org/`` still matches the ``https://example.org`` a browser sends.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_origin(value: str) -> str:
    """``value`` as a browser would send it in ``Origin``, or ValueError saying what to change."""
    raw = value.strip()
    if raw == "*":
        return raw
    example = "use scheme://host[:port], e.g. https://encyclopedia.example.org or http://localhost:3000"
    try:
        parts = urlsplit(raw.rstrip("/"))
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r} is not an origin; {example}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{raw!r} is not an origin; {example}")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{raw!r} has more than an origin (a path, query or user); {example}")
    host = parts.hostname.lower()
    if ":" in host:  # an IPv6 literal keeps its brackets in an origin
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def parse_origins(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """A comma-separated string, a JSON list or a list of origins -> normalised, de-duplicated origins.

    ``*`` allows every origin; it cannot be combined with named origins, since that is always a mistake.
    """
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"looks like a JSON list but is not valid JSON ({exc.msg}); or use a comma-separated list") from None
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ValueError("the JSON form must be a list of strings, e.g. [\"https://example.org\"]")
        else:
            items = text.split(",")
    else:
        items = list(value)
    origins: list[str] = []
    for item in items:
        if not str(item).strip():
            continue
        origin = normalise_origin(str(item))
        if origin not in origins:
            origins.append(origin)
    if "*" in origins and len(origins) > 1:
        raise ValueError("'*' already allows every origin; list named origins or '*' alone")
    return origins
