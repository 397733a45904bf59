"""API keys, rate limits and response headers for a service that faces the public."""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from limits import parse
from limits.errors import StorageError
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from core.errors import ConfigError, RagError
from rag.settings import Settings

log = logging.getLogger("rag.api")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's role and a non-secret label for rate limiting and logs."""

    role: str  # "client" | "admin" | "anonymous"
    label: str


class KeyRing:
    """Configured keys, kept as SHA-256 digests and compared in constant time."""

    def __init__(self, client_keys: list[str], admin_keys: list[str]):
        self._keys: list[tuple[bytes, str]] = [(_digest(k), "client") for k in client_keys] + [
            (_digest(k), "admin") for k in admin_keys
        ]

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        client, admin = list(settings.api_keys), list(settings.admin_keys)
        if settings.api_keys_file is not None:
            path = settings.api_keys_file
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read the API keys file {path}: {exc.strerror}") from None
            for number, line in enumerate(lines, start=1):
                line = line.split("#", 1)[0].strip()
                if not line:
                    continue
                parts = line.split()
                if len(parts) == 1:
                    client.append(parts[0])
                elif len(parts) == 2 and parts[0] in ("client", "admin"):
                    (admin if parts[0] == "admin" else client).append(parts[1])
                else:
                    raise ConfigError(f"{path}:{number}: write 'KEY', 'client KEY' or 'admin KEY'")
        for key in client + admin:
            if len(key) < 16:
                raise ConfigError("API keys must be at least 16 characters long")
        return cls(client, admin)

    @property
    def required(self) -> bool:
        """Whether client endpoints need a key (some client or admin key is configured)."""
        return any(role == "client" for _, role in self._keys)

    @property
    def has_admin(self) -> bool:
        return any(role == "admin" for _, role in self._keys)

    def page_secret(self) -> bytes:
        """The key that signs page tokens: derived from the configured keys, so every worker and
        every restart with the same keys agree, and changing the keys retires old tokens."""
        return hashlib.sha256(b"rag page tokens\0" + b"".join(sorted(digest for digest, _ in self._keys))).digest()

    def role_of(self, presented: str) -> str | None:
        """The role of a presented key, or None. Every configured key is compared, match or not."""
        digest = _digest(presented)
        found = None
        for known, role in self._keys:
            if hmac.compare_digest(known, digest) and found is None:
                found = role
        return found


#: How long a page token opens the question endpoints; the page asks for a new one when it lapses.
PAGE_TOKEN_TTL_S = 3600
PAGE_TOKEN_PREFIX = "page."


class PageTokens:
    """Short-lived tokens the service hands to its own page at ``/``, so the page works when keys are required.

    A token is ``page.EXPIRY.MAC``: an expiry time signed with HMAC-SHA256. Anyone who can load the page
    can get one, so a token grants what the public page grants and no more: the question endpoints,
    under their own per-address rate limit (``RAG_PAGE_RATE_LIMIT``), never ``/metrics`` or ``/admin``.
    """

    def __init__(self, secret: bytes, ttl_s: int = PAGE_TOKEN_TTL_S):
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, expires: int) -> str:
        return hmac.new(self._secret, f"page:{expires}".encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        expires = int(now if now is not None else time.time()) + self.ttl_s
        return f"{PAGE_TOKEN_PREFIX}{expires}.{self._mac(expires)}"

    def check(self, token: str, now: float | None = None) -> str | None:
        """None when the token is valid; otherwise why not ("expired" or "invalid")."""
        prefix, _, rest = token.partition(".")
        expires, _, mac = rest.partition(".")
        if prefix + "." != PAGE_TOKEN_PREFIX or not expires.isdigit() or not hmac.compare_digest(mac, self._mac(int(expires))):
            return "invalid"
        if int(expires) < (now if now is not None else time.time()):
            return "expired"
        return None


def presented_key(headers) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def redacted(uri: str) -> str:
    """A storage URI fit for a log line or an error message: without its password."""
    return re.sub(r"//[^/@]*@", "//***@", uri)


class RateLimiter:
    """A moving-window limit per caller (well-kept ``limits`` library): in this process's memory, or in
    Redis (``RAG_RATE_LIMIT_STORAGE=redis://...``), where every worker and server counts together."""

    def __init__(self, rate: str, storage: str = ""):
        self.item = parse(rate) if rate else None
        self.storage_uri = storage if storage and storage != "memory://" else ""
        self._limiter = MovingWindowRateLimiter(self._storage()) if self.item else None
        self._failing_since = 0.0

    def _storage(self):
        if not self.storage_uri:
            return MemoryStorage()
        from limits.storage import storage_from_string

        # wrap_exceptions: a Redis failure arrives as limits' StorageError, whatever the client library raised
        return storage_from_string(self.storage_uri, key_prefix="rag", wrap_exceptions=True, socket_timeout=2, socket_connect_timeout=2)

    def verify(self) -> None:
        """Refuse to start on a storage that does not answer (one line, not a failure on every request)."""
        if self._limiter is not None and self.storage_uri and not self._limiter.storage.check():
            raise RagError(f"cannot reach the rate-limit storage {redacted(self.storage_uri)} (RAG_RATE_LIMIT_STORAGE); is Redis running there?")

    def check(self, caller: str) -> int | None:
        """None when allowed; otherwise the seconds to wait before retrying."""
        if self._limiter is None:
            return None
        try:
            if self._limiter.hit(self.item, caller):
                return None
            reset, _ = self._limiter.get_window_stats(self.item, caller)
        except StorageError as exc:
            # The shared storage is down: answer rather than refuse everyone (the limit is a guard against
            # abuse, not a condition of service), and say so in the log once a minute.
            if time.monotonic() - self._failing_since > 60:
                self._failing_since = time.monotonic()
                log.error("rate-limit storage %s failed, requests pass unlimited meanwhile: %s", redacted(self.storage_uri), exc)
            return None
        return max(1, math.ceil(reset - time.time()))


def describe_rate_limit(rate: str, storage: str, workers: int) -> str:
    """What ``rag serve`` says at start about the limit a client really gets (per worker without shared storage)."""
    if not rate:
        return "rate limit: off (RAG_RATE_LIMIT is empty)"
    item = parse(rate)
    per = item.GRANULARITY.name if item.multiples == 1 else f"{item.multiples} {item.GRANULARITY.name}s"
    if storage and storage != "memory://":
        shared = f", shared by the {workers} workers" if workers > 1 else ""
        return f"rate limit {item.amount}/{per} per client{shared} through {redacted(storage)}"
    if workers == 1:
        return f"rate limit {item.amount}/{per} per client"
    return (
        f"rate limit {item.amount}/{per} per worker ({workers} workers: up to {item.amount * workers}/{per} per client; "
        "set RAG_RATE_LIMIT_STORAGE=redis://... to share it)"
    )


def security_headers(content_type: str, page: bool) -> list[tuple[bytes, bytes]]:
    """Headers for every response; the widget's pages also get a strict content security policy."""
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), interest-cohort=()"),
    ]
    if not page and content_type.startswith("text/html"):
        # The API docs (/docs, /redoc): FastAPI's pages start Swagger UI and ReDoc with inline
        # scripts, so they get their own policy, which still keeps every request on this service
        # (ReDoc's bundle would otherwise fetch its logo from the vendor's CDN).
        headers.append(
            (
                b"content-security-policy",
                b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                b"img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
                b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            )
        )
    if page and content_type.startswith("text/html"):
        headers += [
            (b"x-frame-options", b"DENY"),
            (
                b"content-security-policy",
                b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
                b"font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ]
    return headers
