"""Images in user messages: inputs to content parts, and token estimates.

An image is given as a file path (``str`` or ``os.PathLike``), raw ``bytes`` or
``bytearray``, an ``http(s)`` URL, or a ``data:image/...;base64,`` URL. Each
becomes the canonical Chat Completions content part::

    {"type": "image_url", "image_url": {"url": "<http(s) URL or data URL>"}}

A path or bytes becomes a data URL whose media type is read from the first
bytes (PNG, JPEG, GIF or WEBP), never from a file name; a data URL is decoded,
checked the same way and written again in that canonical form. An http(s) URL
is kept as given and never fetched. Everything here runs before any network
I/O. A bad image is a :class:`~promptkit.ConfigurationError` naming the item by
its index and, for a file, its path: never its bytes, and never a whole URL
(a signed URL carries its credentials in the query).

Types and pixel sizes come from :mod:`promptkit._image_format`.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import stat
import urllib.parse
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from ._errors import ConfigurationError
from ._image_format import Size, payload_size, sniff, url_size
from ._validate import check_text

__all__ = [
    "ImageInput", "MessageInput", "Provider", "MAX_IMAGE_BYTES", "image_part", "image_parts", "user_content",
    "check_parts", "message_content", "content_preview", "openai_image_tokens", "anthropic_image_tokens", "part_tokens",
]  # fmt: skip

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray]
"""One image: a file path, its bytes, an http(s) URL or a ``data:image/...;base64,`` URL."""

MessageInput = Union[str, Sequence[Mapping[str, Any]]]
"""A user message: text, or a list of OpenAI content parts (``text`` and ``image_url``)."""

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""The largest image accepted, in bytes (OpenAI's vision guide: "up to 20MB per image")."""

DETAILS = ("low", "high", "auto")

Provider = Literal["openai", "anthropic"]
"""Whose rule estimates an image's tokens."""

_KINDS = "a PNG, JPEG, GIF or WEBP image"
# A str image is a URL when it starts with "data:" or "<scheme>://"; anything else is a path.
# A scheme has two letters or more, so "C://x" stays a Windows path.
_URL = re.compile(r"(?:data:|[A-Za-z][A-Za-z0-9+.-]+://)", re.IGNORECASE)


# -- inputs to content parts ----------------------------------------------------------------------


def _media_data_url(data: bytes, where: str) -> str:
    if not data:
        raise ConfigurationError(f"{where} is empty: it holds no image")
    if len(data) > MAX_IMAGE_BYTES:
        raise ConfigurationError(f"{where} is {len(data)} bytes, over the {MAX_IMAGE_BYTES} byte limit per image")
    media_type = sniff(data)
    if media_type is None:
        raise ConfigurationError(f"{where} is not {_KINDS} (the type is read from its first bytes)")
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _read(path: Union[str, bytes], where: str) -> bytes:
    problem = ""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            problem = "is a directory, not an image file"
        elif not stat.S_ISREG(mode):
            problem = "is not a regular file"  # a FIFO or a device would block or never end
        else:
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_size > MAX_IMAGE_BYTES:
                    problem = f"is over the {MAX_IMAGE_BYTES} byte limit per image"
                else:
                    return file.read(MAX_IMAGE_BYTES + 1)  # a file that grew meanwhile fails the size check
    except FileNotFoundError:
        problem = "does not exist"
    except OSError as exc:  # permissions, a name too long, ...
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
    except ValueError:  # a NUL character, or a lone surrogate the file system cannot encode
        problem = "is not a valid file path"
    raise ConfigurationError(f"{where} {problem}")


def _http_url(url: str, where: str) -> str:
    check_text(url, where)
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
        raise ConfigurationError(f"{where} is not a valid {parts.scheme.lower()} URL (a host is needed, and no spaces)")
    return url


def _data_url(url: str, where: str) -> str:
    header, comma, payload = url[5:].partition(",")
    params = [p.strip().lower() for p in header.split(";")]
    if not comma or len(params) < 2 or params[-1] != "base64" or not params[0].startswith("image/"):
        raise ConfigurationError(f"{where} is a malformed data URL: expected data:image/<type>;base64,<data>")
    if len(payload) // 4 * 3 > MAX_IMAGE_BYTES + 3:
        raise ConfigurationError(f"{where} is a data URL over the {MAX_IMAGE_BYTES} byte limit per image")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        data = None
    if data is None:
        raise ConfigurationError(f"{where} is a malformed data URL: its data is not valid base64")
    return _media_data_url(data, f"{where} (a data URL)")


def _url(value: str, where: str) -> str:
    """An http(s) URL as given, a data URL in canonical form; any other scheme fails."""
    scheme = value.split(":", 1)[0].lower() if ":" in value else ""
    if scheme in ("http", "https"):
        return _http_url(value, where)
    if scheme == "data":
        return _data_url(value, where)
    raise ConfigurationError(
        f"{where}: the URL scheme {scheme!r} is not supported; give an http(s) or data: URL, a file path or bytes"
    )


def _image_url(image: Any, where: str) -> str:
    if isinstance(image, (bytes, bytearray)):
        return _media_data_url(bytes(image), f"{where} ({len(image)} bytes)")
    if isinstance(image, str) and _URL.match(image):
        return _url(image, where)
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        shown = os.fsdecode(path)
        if not shown:
            raise ConfigurationError(f"{where} is an empty path")
        return _media_data_url(_read(path, f"{where} ({shown!r})"), f"{where} ({shown!r})")
    raise ConfigurationError(f"{where} must be a file path, bytes or an http(s) URL, got {type(image).__name__}")


def _check_detail(detail: Any, where: str) -> None:
    if detail is not None and detail not in DETAILS:
        raise ConfigurationError(f"{where}: detail must be one of {', '.join(DETAILS)}, got {detail!r}")


def _part(url: str, detail: Optional[str]) -> Dict[str, Any]:
    ref: Dict[str, Any] = {"url": url}
    if detail is not None:
        ref["detail"] = detail
    return {"type": "image_url", "image_url": ref}


def image_part(image: ImageInput, *, detail: Optional[str] = None, where: str = "image") -> Dict[str, Any]:
    """The canonical ``image_url`` content part of one image.

    Args:
        image: a file path, bytes, an http(s) URL or a ``data:image/...;base64,`` URL.
        detail: ``"low"``, ``"high"`` or ``"auto"`` for the part's ``detail``; ``None`` leaves it out.
        where: how errors name the image (``"images[2]"``).

    Raises:
        ConfigurationError: an unknown type, an empty or unreadable file, a
            directory, another URL scheme, a malformed data URL, or over
            :data:`MAX_IMAGE_BYTES`.
    """
    _check_detail(detail, where)
    return _part(_image_url(image, where), detail)


def image_parts(images: Optional[Sequence[ImageInput]], *, detail: Optional[str] = None) -> List[Dict[str, Any]]:
    """The content parts of ``images`` (``None`` or empty: none), each named ``images[i]`` in errors."""
    if images is None:
        return []
    if isinstance(images, (str, bytes, bytearray, os.PathLike)) or not isinstance(images, Sequence):
        raise ConfigurationError(
            f"images must be a list of images (paths, bytes or URLs), got {type(images).__name__}; "
            "put a single image in a list"
        )
    return [image_part(image, detail=detail, where=f"images[{i}]") for i, image in enumerate(images)]


def user_content(
    text: str, images: Optional[Sequence[ImageInput]] = None, *, detail: Optional[str] = None
) -> Union[str, List[Dict[str, Any]]]:
    """A user message's ``content``: ``text`` alone when there are no images (history stays as it was),
    else a text part (left out when ``text`` is empty) followed by the image parts, in order."""
    check_text(text, "message")
    parts = image_parts(images, detail=detail)
    if not parts:
        return text
    return ([{"type": "text", "text": text}] if text else []) + parts


def _only(part: Mapping[str, Any], keys: Tuple[str, ...], where: str) -> None:
    extra = [k for k in part if k not in keys]
    if extra:
        raise ConfigurationError(f"{where} has unsupported keys {extra!r}; allowed: {', '.join(keys)}")


def check_parts(parts: Any, what: str = "message") -> List[Dict[str, Any]]:
    """A copy of a user-supplied content-part list, checked, with data URLs in canonical form.

    Each part is ``{"type": "text", "text": str}`` or ``{"type": "image_url",
    "image_url": {"url": str, "detail"?: "low" | "high" | "auto"}}`` whose URL
    is http(s) or ``data:image/...;base64,``.

    Raises:
        ConfigurationError: not a non-empty list of such parts.
    """
    if not isinstance(parts, (list, tuple)) or not parts:
        raise ConfigurationError(f"{what} must be a str or a non-empty list of content parts")
    out: List[Dict[str, Any]] = []
    for i, part in enumerate(parts):
        where = f"{what}[{i}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text":
            _only(part, ("type", "text"), where)
            out.append({"type": "text", "text": check_text(part.get("text"), f"{where}['text']")})
        elif kind == "image_url":
            _only(part, ("type", "image_url"), where)
            ref = part.get("image_url")
            if not isinstance(ref, Mapping) or not isinstance(ref.get("url"), str):
                raise ConfigurationError(f"{where}['image_url'] must be a dict with a str 'url'")
            _only(ref, ("url", "detail"), f"{where}['image_url']")
            _check_detail(ref.get("detail"), where)
            url = ref["url"]
            if not _URL.match(url):
                raise ConfigurationError(f"{where}: the url must be http(s) or data:image/...;base64 (pass a file "
                                         "path in images=[...])")  # fmt: skip
            out.append(_part(_url(url, where), ref.get("detail")))
        else:
            got = repr(kind) if isinstance(part, Mapping) else f"a {type(part).__name__}"
            raise ConfigurationError(f"{where} must be a dict with type 'text' or 'image_url', got {got}")
    return out


def message_content(
    message: Optional[MessageInput], images: Optional[Sequence[ImageInput]] = None
) -> Union[None, str, List[Dict[str, Any]]]:
    """The ``content`` of the user message a turn adds: ``None`` when there is none (a continuation
    after tool results), a str when there are no images, else a list of parts."""
    if isinstance(message, (list, tuple)):
        return check_parts(message) + image_parts(images)
    if message is None:
        return image_parts(images) or None
    if not isinstance(message, str):
        kind = type(message).__name__
        raise ConfigurationError(f"message must be a str, a list of content parts or None, got {kind}")
    return user_content(message, images)


def content_preview(content: Any) -> str:
    """A message's content as one line of text: each image part becomes ``[image]``."""
    if not isinstance(content, (list, tuple)):
        return str(content or "")
    pieces = []
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif kind in ("image_url", "input_image", "image"):
            pieces.append("[image]")
    return " ".join(pieces)


# -- token estimates ------------------------------------------------------------------------------


def openai_image_tokens(size: Optional[Size], detail: Optional[str] = None) -> int:
    """Estimated prompt tokens of one image for OpenAI's GPT-4o family (also GPT-4.1, o1, o3).

    From OpenAI's vision guide, "Calculating costs"
    (https://platform.openai.com/docs/guides/vision/calculating-costs, now
    part of the "Images and vision" guide):
    ``detail: "low"`` costs 85 tokens; otherwise (``"high"``, ``"auto"``, or no
    detail) the image is scaled to fit in 2048x2048, then so that its shortest
    side is 768 px (never scaled up), and costs 85 + 170 per 512 px tile. A
    1024x1024 image costs 765 tokens, a 2048x4096 one 1105.

    An unknown size (an http(s) URL, which is never fetched) is taken as
    1024x1024, so 765 tokens. Models that count 32 px patches instead
    (gpt-4.1-mini, gpt-4.1-nano, o4-mini) and gpt-4o-mini (which reports
    image tokens multiplied so that they bill like gpt-4o) count differently.
    """
    if detail == "low":
        return 85
    width, height = size if size is not None else (1024, 1024)
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        scale = 2048 / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > 768:
        scale = 768 / min(w, h)
        w, h = w * scale, h * scale
    tiles = math.ceil(math.floor(w) / 512) * math.ceil(math.floor(h) / 512)
    return 85 + 170 * max(1, tiles)


def anthropic_image_tokens(size: Optional[Size]) -> int:
    """Estimated prompt tokens of one image for Anthropic's Claude models.

    From Anthropic's "Vision" guide, "Evaluate image size" and "Calculate
    image costs" (https://docs.anthropic.com/en/docs/vision, now
    https://platform.claude.com/docs/en/build-with-claude/vision):
    ``tokens = width * height / 750`` (rounded up here), after an image whose
    long edge is over 1568 px is scaled down to it; an image over about 1,600
    tokens is scaled down too, so the estimate is capped at 1,600. A
    1000x1000 image costs 1334 tokens. An unknown size (a URL) counts 1,600.
    Newer high-resolution Claude models may accept, and count, more.
    """
    if size is None:
        return 1600
    w, h = float(size[0]), float(size[1])
    if max(w, h) > 1568:
        scale = 1568 / max(w, h)
        w, h = math.floor(w * scale), math.floor(h * scale)
    return min(1600, max(1, math.ceil(w * h / 750)))


def _reference(part: Mapping[str, Any]) -> Tuple[Optional[Size], Optional[str]]:
    """The size and detail of an image part in the Chat Completions, Responses or Anthropic form."""
    kind = part.get("type")
    ref = part.get("image_url")
    if kind == "image_url" and isinstance(ref, Mapping):
        url, detail = ref.get("url"), ref.get("detail")
    elif kind in ("image_url", "input_image"):
        url, detail = ref, part.get("detail")
    else:
        source = part.get("source")
        if isinstance(source, Mapping) and isinstance(source.get("data"), str):
            return payload_size(source["data"]), None
        return None, None
    return (url_size(url) if isinstance(url, str) else None), (detail if isinstance(detail, str) else None)


def part_tokens(part: Mapping[str, Any], provider: Provider = "openai") -> int:
    """Estimated prompt tokens of one image part, by :func:`openai_image_tokens` or :func:`anthropic_image_tokens`."""
    size, detail = _reference(part)
    if provider == "anthropic":
        return anthropic_image_tokens(size)
    return openai_image_tokens(size, detail)
