from __future__ import annotations

import struct

from arktrack.pixel import GIF, pixel_tag


def test_gif_is_a_transparent_1x1_image() -> None:
    assert GIF[:6] == b"GIF89a"
    assert struct.unpack("<HH", GIF[6:10]) == (1, 1)
    extension = GIF.index(b"\x21\xf9\x04")  # graphic control extension
    assert GIF[extension + 3] & 1 == 1  # transparency flag
    assert GIF.endswith(b";")
    assert len(GIF) == 42


def test_pixel_tag_renders_as_nothing() -> None:
    tag = pixel_tag("https://t.example/o/abc")
    assert tag.startswith('<img src="https://t.example/o/abc" width="1" height="1" alt=""')
    assert "display:block" in tag
    assert tag.endswith("/>")
