"""The HTTP headers the service sets itself: the security headers of every response, and a
Content-Disposition that any file name fits in (issue 20)."""
from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

# Every response carries these (deploy/nginx.conf sets the same ones for what nginx answers itself).
# Scripts, styles and media only from the service itself, no inline script (static/app.js holds all
# of it); `style-src-attr 'unsafe-inline'` lets the bars' widths (style="width: 42%") be set without
# a script, and allows no <style> element. The pages are never framed (clickjacking), responses are
# never sniffed into another type, and no URL (a result's id is its only key) leaves as a Referer.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "style-src-attr 'unsafe-inline'",
    "img-src 'self'",
    "media-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
_NOT_TOKEN = re.compile(r"[^A-Za-z0-9!#$&+.^_`|~ -]")   # RFC 6266's quoted filename, kept to plain ASCII


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """`inline; filename="..."; filename*=UTF-8''...` (RFC 6266, RFC 8187): an ASCII stand-in for old
    clients, and the whole name, percent-encoded, for the others. Any name fits: a newline, a quote
    or a name in any script never reaches the header as itself."""
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = _NOT_TOKEN.sub("_", ascii_name).strip(" .") or "audio"
    return f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
