"""Image formats from their bytes: the media type (magic bytes) and the pixel size (header).

PNG, JPEG, GIF and WEBP only, with the standard library only (no Pillow): the
PNG IHDR chunk, the JPEG SOFn frame header, the GIF logical screen descriptor,
and WEBP's first chunk (VP8 key frame, VP8L header or VP8X canvas). The file
name plays no part. Base64 data (a ``data:`` URL's payload) is decoded only as
far as its header needs.
"""

from __future__ import annotations

import base64
import binascii
import struct
import threading
from collections import OrderedDict
from typing import Optional, Tuple

__all__ = ["Size", "sniff", "image_size", "payload_size", "url_size"]

Size = Tuple[int, int]
"""``(width, height)`` in pixels."""

# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sniff(data: bytes) -> Optional[str]:
    """The media type of an image from its first bytes (PNG, JPEG, GIF or WEBP), else ``None``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _png(data: bytes) -> Optional[Size]:
    # The signature (8 bytes), then the IHDR chunk: length (4), "IHDR", width and height (u32 BE).
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _gif(data: bytes) -> Optional[Size]:
    # "GIF8?a", then the logical screen descriptor: width and height (u16 LE).
    if len(data) < 10:
        return None
    width, height = struct.unpack("<HH", data[6:10])
    return width, height


def _webp(data: bytes) -> Optional[Size]:
    # "RIFF", size (4), "WEBP", then the first chunk's fourcc and size (4) from byte 12.
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        # Lossy: a VP8 key frame, its 3-byte frame tag, the start code, 14-bit width and height (LE).
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        # Lossless: the signature byte, then width-1 and height-1 in 14 bits each (LE bit order).
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        # Extended: flags and 3 reserved bytes, then canvas width-1 and height-1 in 24 bits (LE).
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _jpeg(data: bytes) -> Optional[Size]:
    # Segments after SOI: 0xFF (fill bytes allowed), a marker, and, for most markers, a u16 BE
    # length that counts itself. A SOFn segment holds precision (1), height and width (u16 BE).
    i, end = 2, len(data)
    while i < end:
        if data[i] != 0xFF:
            return None  # not at a marker: corrupt, or entropy-coded data
        while i < end and data[i] == 0xFF:
            i += 1
        if i >= end:
            return None
        marker = data[i]
        i += 1
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue  # no length
        if marker in (0xD9, 0xDA) or i + 2 > end:
            return None  # EOI or SOS before any frame header, or the data ends
        (length,) = struct.unpack(">H", data[i : i + 2])
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if i + 7 > end:
                return None
            height, width = struct.unpack(">HH", data[i + 3 : i + 7])
            return width, height
        i += length
    return None


_PARSERS = {"image/png": _png, "image/jpeg": _jpeg, "image/gif": _gif, "image/webp": _webp}


def image_size(data: bytes) -> Optional[Size]:
    """``(width, height)`` in pixels from an image's header bytes, or ``None`` when not determinable."""
    parser = _PARSERS.get(sniff(data) or "")
    size = parser(data) if parser is not None else None
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


# A JPEG's frame header may follow a large EXIF segment: decode more only when it is a JPEG.
_PREFIXES = (4096, 262144)
_CACHE_SIZE = 256
_sizes: "OrderedDict[Tuple[int, int], Optional[Size]]" = OrderedDict()
_sizes_lock = threading.Lock()


def _payload_size(payload: str) -> Optional[Size]:
    for limit in (*_PREFIXES, None):
        chunk = payload if limit is None or len(payload) <= limit else payload[:limit]
        try:
            data = base64.b64decode(chunk)
        except (binascii.Error, ValueError):
            return None
        size = image_size(data)
        if size is not None or chunk is payload or sniff(data) != "image/jpeg":
            return size
    return None  # pragma: no cover - the last pass decodes the whole payload


def payload_size(payload: str) -> Optional[Size]:
    """``(width, height)`` of base64 image data, decoding only as far as the header needs; cached.

    The cache is keyed by the string's length and hash, not the string itself,
    so that it does not keep megabytes of base64 alive.
    """
    key = (len(payload), hash(payload))
    with _sizes_lock:
        if key in _sizes:
            _sizes.move_to_end(key)
            return _sizes[key]
    size = _payload_size(payload)
    with _sizes_lock:
        _sizes[key] = size
        if len(_sizes) > _CACHE_SIZE:
            _sizes.popitem(last=False)
    return size


def url_size(url: str) -> Optional[Size]:
    """``(width, height)`` of the image a ``data:`` URL holds; ``None`` for an http(s) URL or bad data."""
    if url[:5].lower() != "data:":
        return None
    header, comma, payload = url[5:].partition(",")
    if not comma or header.rsplit(";", 1)[-1].strip().lower() != "base64":
        return None
    return payload_size(payload)
