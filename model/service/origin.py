"""Whether a request that changes something (a vote) was sent by a page of this service, not by another
site's page in the listener's browser (cross-site request forgery).

Browsers say where a request comes from: `Sec-Fetch-Site` (Chromium, Firefox, Safari 16.4+) on every
request, `Origin` on every POST. A form posted without JavaScript and a `fetch` both carry them, so no
token in the page is needed. `Sec-Fetch-Site` is read first: the browser computes it, whatever a reverse
proxy does to the Host header. Without it, an `Origin` must name the host the request was sent to;
"null" (what a browser sends under this service's `Referrer-Policy: no-referrer` for a form) says
nothing. A request with neither is not a browser's (curl, a script using the API) and is taken.
"""
from __future__ import annotations

from typing import Mapping
from urllib.parse import urlsplit

# Sec-Fetch-Site values of a request this service's own pages made (or the listener typed: "none").
OWN = ("same-origin", "none")


def foreign_sender(headers: Mapping[str, str], host: str) -> str | None:
    """Where a request to `host` (its Host header, "name[:port]") came from when that is another site
    (the site, or "another site"), else None."""
    site = headers.get("Sec-Fetch-Site")
    origin = headers.get("Origin")
    if site is not None:
        return None if site.lower() in OWN else (origin if origin and origin != "null" else "another site")
    if origin and origin != "null" and urlsplit(origin).netloc.lower() != host.lower():
        return origin
    return None
