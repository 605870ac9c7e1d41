"""Tiny images built byte by byte with the standard library, for the image tests.

The PNG is a complete, decodable image. The JPEG, GIF and WEBP builders write
valid headers, which is all promptkit reads (the type and the pixel size);
their pixel data is left out or zero. Each builder names the specification its
layout follows.
"""

from __future__ import annotations

import struct
import zlib
from typing import Sequence


def png(width: int, height: int) -> bytes:
    """A greyscale PNG of ``width`` x ``height`` black pixels.

    Layout (W3C PNG Specification, 2nd edition, sections 5.2-5.3 and 11.2):
    the 8-byte signature, then chunks of length (u32 BE), type, data and the
    CRC-32 of type and data. IHDR holds width and height (u32 BE), bit depth 8,
    colour type 0 (greyscale), compression 0, filter 0, interlace 0. IDAT is
    the zlib stream of the scanlines, each led by filter type 0. IEND ends it.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    scanlines = (b"\x00" + bytes(width)) * height
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def _segment(marker: int, payload: bytes) -> bytes:
    # ITU-T T.81 (JPEG) B.1.1.4: 0xFF, the marker, a u16 BE length that counts itself, the payload.
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg(width: int, height: int, *, sof: int = 0xC0, app_sizes: Sequence[int] = (), dht: bool = False,
         fill: bool = False) -> bytes:
    """A JPEG header: SOI, APP0 (JFIF), optional APPn padding and DHT, SOFn, EOI.

    Layout (ITU-T T.81 Annex B): SOI is FF D8. APP0 is the JFIF 1.02 header
    ("JFIF\\0", version 1.01, density units 0, density 1x1, no thumbnail). Each
    of ``app_sizes`` adds an APP1 segment with that many payload bytes (as EXIF
    would, pushing the frame header further in). ``dht`` adds a Huffman table
    segment (C4, inside the SOF marker range but not a frame header) before
    the frame. ``fill`` puts fill bytes (extra FFs, B.1.1.2) before the SOF
    marker. The SOFn frame header (B.2.2): precision 8, height and width
    (u16 BE), one component (id 1, sampling 1x1, quantisation table 0). No
    scan follows: EOI (FF D9) ends it.
    """
    out = b"\xff\xd8" + _segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    for size in app_sizes:
        out += _segment(0xE1, bytes(size))
    if dht:
        out += _segment(0xC4, bytes(17))  # table class and id, then 16 zero code counts
    if fill:
        out += b"\xff\xff"
    out += _segment(sof, struct.pack(">BHHB", 8, height, width, 1) + bytes([1, 0x11, 0]))
    return out + b"\xff\xd9"


def jpeg_scan_first() -> bytes:
    """A JPEG whose scan (SOS, DA) starts before any frame header: no size can be read."""
    return b"\xff\xd8" + _segment(0xDA, bytes(10)) + b"\xff\xd9"


def gif(width: int, height: int, version: bytes = b"89a") -> bytes:
    """A GIF with no image: header and logical screen descriptor, then the trailer.

    Layout (GIF89a specification, sections 17, 18 and 27): "GIF" and the
    version, then the logical screen width and height (u16 LE), packed fields,
    background colour index and pixel aspect ratio (all 0), then 0x3B.
    """
    return b"GIF" + version + struct.pack("<HHBBB", width, height, 0, 0, 0) + b";"


def _riff(fourcc: bytes, payload: bytes) -> bytes:
    # RFC 9649 (WebP Image Format) section 2.4-2.5: "RIFF", the file size - 8 (u32 LE), "WEBP",
    # then chunks of fourcc, payload size (u32 LE) and payload, padded to an even length.
    chunk = fourcc + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_lossy(width: int, height: int, scale: int = 0) -> bytes:
    """A simple lossy WEBP: a VP8 chunk holding a key frame's header.

    Layout (RFC 6386 section 9.1): a 3-byte frame tag (bit 0 = 0: key frame;
    bit 4: show frame), the start code 9D 01 2A, then width and height as
    u16 LE, each 14 bits of size and 2 bits of upscaling (``scale``, which
    does not change the size).
    """
    tag = bytes([0x10, 0x00, 0x00])
    size = struct.pack("<HH", width | scale << 14, height | scale << 14)
    return _riff(b"VP8 ", tag + b"\x9d\x01\x2a" + size + bytes(10))


def webp_lossless(width: int, height: int) -> bytes:
    """A simple lossless WEBP: a VP8L chunk's header.

    Layout (RFC 9649 section 3.2): the signature byte 0x2F, then 32 bits
    (LE): width - 1 in 14 bits, height - 1 in 14 bits, alpha_is_used (1 bit)
    and a 3-bit version of 0.
    """
    bits = (width - 1) | (height - 1) << 14 | 1 << 28
    return _riff(b"VP8L", b"\x2f" + struct.pack("<I", bits) + bytes(4))


def webp_extended(width: int, height: int) -> bytes:
    """An extended WEBP: the VP8X chunk (its canvas size), and nothing after it.

    Layout (RFC 9649 section 2.7): 8 bits of flags (here alpha, 0x10), 24
    reserved bits, then canvas width - 1 and canvas height - 1 in 24 bits (LE) each.
    """
    payload = bytes([0x10, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _riff(b"VP8X", payload)
