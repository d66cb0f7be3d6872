"""The 1x1 transparent GIF and the tag that loads it."""

from __future__ import annotations

import base64

# A 1x1 transparent GIF, 42 bytes: one palette entry, marked transparent.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")

# Every load must reach us: proxies and clients may not cache it.
NO_CACHE_HEADERS = [
    ("Cache-Control", "no-cache, no-store, must-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
]


def pixel_tag(src: str) -> str:
    """An ``<img>`` that renders as nothing: sized, borderless, and with an empty alt so
    clients that block images show no placeholder text."""
    return (
        f'<img src="{src}" width="1" height="1" alt="" '
        'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />'
    )
