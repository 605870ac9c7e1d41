"""Image types from magic bytes and pixel sizes from headers (promptkit._image_format)."""

from __future__ import annotations

import base64
from typing import Callable, Optional, Tuple

import pytest

from promptkit._image_format import image_size, payload_size, sniff, url_size

try:
    from tests import _image_bytes as make
except ImportError:  # pragma: no cover - run from inside tests/
    import _image_bytes as make  # type: ignore[no-redef]


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


@pytest.mark.parametrize(
    "build, media_type, size",
    [
        (lambda: make.png(3, 2), "image/png", (3, 2)),
        (lambda: make.png(1, 300), "image/png", (1, 300)),
        (lambda: make.jpeg(640, 480), "image/jpeg", (640, 480)),
        (lambda: make.jpeg(1920, 1080, sof=0xC2, dht=True), "image/jpeg", (1920, 1080)),  # progressive, DHT first
        (lambda: make.jpeg(17, 65535, sof=0xC1, fill=True), "image/jpeg", (17, 65535)),  # fill bytes before SOF
        (lambda: make.jpeg(800, 600, app_sizes=[60000]), "image/jpeg", (800, 600)),  # a large EXIF-like APP1
        (lambda: make.gif(320, 200), "image/gif", (320, 200)),
        (lambda: make.gif(65535, 1, b"87a"), "image/gif", (65535, 1)),
        (lambda: make.webp_lossy(550, 368), "image/webp", (550, 368)),
        (lambda: make.webp_lossy(16383, 2, scale=3), "image/webp", (16383, 2)),  # upscale bits are not size
        (lambda: make.webp_lossless(400, 301), "image/webp", (400, 301)),
        (lambda: make.webp_lossless(16384, 16384), "image/webp", (16384, 16384)),
        (lambda: make.webp_extended(5000, 7), "image/webp", (5000, 7)),
        (lambda: make.webp_extended(1 << 24, 1), "image/webp", (1 << 24, 1)),
    ],
)
def test_type_and_size_of_each_format(build: Callable[[], bytes], media_type: str, size: Tuple[int, int]) -> None:
    data = build()
    assert sniff(data) == media_type
    assert image_size(data) == size
    assert url_size(data_url(data, media_type)) == size


def test_a_real_png_decodes() -> None:
    import zlib

    data = make.png(4, 3)
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4 : idat], "big")
    assert zlib.decompress(data[idat + 4 : idat + 4 + length]) == (b"\x00" + bytes(4)) * 3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"BM" + bytes(60),  # BMP
        b"\x00\x00\x01\x00" + bytes(20),  # ICO
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"II*\x00" + bytes(20),  # TIFF
        b"RIFF\x10\x00\x00\x00WAVEfmt ",  # RIFF, but not WEBP
        b"\x89PNG\r\n\x1a",  # a signature cut short
        b"GIF90a" + bytes(10),
    ],
)
def test_other_types_are_not_recognised(data: bytes) -> None:
    assert sniff(data) is None
    assert image_size(data) is None


@pytest.mark.parametrize(
    "data",
    [
        make.png(3, 2)[:20],  # IHDR cut short
        make.png(3, 2)[:12] + b"IDAT" + make.png(3, 2)[16:],  # the first chunk is not IHDR
        make.png(0, 5),  # a zero width
        make.jpeg_scan_first(),  # SOS before any frame header
        b"\xff\xd8\xff",  # nothing after SOI
        b"\xff\xd8\xff\xe0\x00\x01",  # a segment length under 2
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00garbage",  # no marker after APP0
        make.jpeg(640, 480)[:-9],  # the frame header cut short
        make.gif(320, 200)[:8],
        make.webp_lossy(550, 368)[:28],
        make.webp_lossy(550, 368).replace(b"\x9d\x01\x2a", b"\x00\x00\x00"),  # no VP8 start code
        make.webp_lossless(400, 301).replace(b"\x2f", b"\x00", 1),  # no VP8L signature byte
        make.webp_extended(5000, 7)[:26],
        make.webp_extended(5000, 7).replace(b"VP8X", b"ALPH"),  # an unknown first chunk
    ],
)
def test_undeterminable_sizes_are_none(data: bytes) -> None:
    assert image_size(data) is None


@pytest.mark.parametrize("app_sizes", [[60000], [65000] * 5])
def test_a_data_url_is_decoded_past_a_large_exif_segment(app_sizes: list) -> None:
    # The frame header sits past the first decoded prefix (60 kB in), or past every prefix (325 kB in).
    data = make.jpeg(1234, 567, app_sizes=app_sizes)
    payload = base64.b64encode(data).decode()
    assert payload_size(payload) == (1234, 567)
    assert payload_size(payload) == (1234, 567)  # the second lookup is answered the same (cached)


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://example.com/cat.png", None),  # never fetched
        ("http://example.com/cat.png", None),
        ("data:image/png;base64,%%%%", None),
        ("data:image/png,rawbytes", None),  # not base64
        ("data:image/png;base64", None),  # no comma
        (data_url(b"not an image"), None),
        (data_url(make.gif(9, 8), "image/png"), (9, 8)),  # the declared type plays no part
        ("DATA:image/gif;BASE64," + base64.b64encode(make.gif(9, 8)).decode(), (9, 8)),
    ],
)
def test_url_size(url: str, expected: Optional[Tuple[int, int]]) -> None:
    assert url_size(url) == expected
