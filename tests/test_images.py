"""Images in user messages (promptkit._images): inputs, errors before any I/O, token estimates, end to end."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

import promptkit
from promptkit import _images as images
from promptkit import _tokens as tokens
from promptkit.testing import MockReply, MockServer

try:
    from tests import _image_bytes as make
except ImportError:  # pragma: no cover - run from inside tests/
    import _image_bytes as make  # type: ignore[no-redef]

CAT_URL = "https://example.com/cat.png"


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=promptkit.Timeout(idle=10)) as c:
        yield c


def data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def image_url_part(url: str, **extra: str) -> Dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **extra}}


# -- each input kind -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, media_type",
    [
        (make.png(2, 2), "image/png"),
        (make.jpeg(8, 8), "image/jpeg"),
        (make.gif(8, 8), "image/gif"),
        (make.webp_lossless(8, 8), "image/webp"),
    ],
)
def test_paths_and_bytes_become_data_urls_typed_by_their_bytes(tmp_path: Path, data: bytes, media_type: str) -> None:
    path = tmp_path / "picture.bmp"  # the name is wrong on purpose: the bytes decide
    path.write_bytes(data)
    expected = image_url_part(data_url(data, media_type))
    assert images.image_part(str(path)) == expected
    assert images.image_part(path) == expected  # os.PathLike
    assert images.image_part(data) == expected
    assert images.image_part(bytearray(data)) == expected


def test_urls() -> None:
    assert images.image_part(CAT_URL) == image_url_part(CAT_URL)
    assert images.image_part("HTTP://example.com/a.jpg?x=1") == image_url_part("HTTP://example.com/a.jpg?x=1")
    gif = make.gif(4, 4)
    # A data URL is checked and written again in canonical form: its declared type plays no part.
    assert images.image_part(data_url(gif, "image/png")) == image_url_part(data_url(gif, "image/gif"))
    messy = "data:IMAGE/JPG;charset=x;Base64," + base64.b64encode(gif).decode()
    assert images.image_part(messy) == image_url_part(data_url(gif, "image/gif"))


def test_detail() -> None:
    assert images.image_part(CAT_URL, detail="low") == image_url_part(CAT_URL, detail="low")
    assert images.image_parts([CAT_URL, CAT_URL], detail="high") == [image_url_part(CAT_URL, detail="high")] * 2
    with pytest.raises(promptkit.ConfigurationError, match="detail must be one of low, high, auto"):
        images.image_part(CAT_URL, detail="medium")


def test_user_content_is_a_plain_str_without_images() -> None:
    assert images.user_content("hi") == "hi"
    assert images.user_content("hi", []) == "hi"
    assert images.user_content("hi", None) == "hi"
    png = make.png(1, 1)
    assert images.user_content("what?", [CAT_URL, png]) == [
        {"type": "text", "text": "what?"},
        image_url_part(CAT_URL),
        image_url_part(data_url(png, "image/png")),
    ]
    assert images.user_content("", [CAT_URL]) == [image_url_part(CAT_URL)]  # no empty text part


def test_message_content() -> None:
    assert images.message_content(None) is None  # a continuation after tool results
    assert images.message_content(None, []) is None
    assert images.message_content(None, [CAT_URL]) == [image_url_part(CAT_URL)]
    parts = [{"type": "text", "text": "a"}, image_url_part(CAT_URL, detail="auto")]
    assert images.message_content(parts, [CAT_URL]) == parts + [image_url_part(CAT_URL)]
    with pytest.raises(promptkit.ConfigurationError, match="message must be a str, a list of content parts or None"):
        images.message_content(42)  # type: ignore[arg-type]


def test_check_parts_copies_and_keeps_valid_parts() -> None:
    gif = make.gif(2, 3)
    given = [{"type": "text", "text": "hi"}, image_url_part(data_url(gif, "image/gif"), detail="low")]
    checked = images.check_parts(given)
    assert checked == given
    checked[1]["image_url"]["url"] = "changed"
    assert given[1]["image_url"]["url"] != "changed"
    assert images.check_parts(({"type": "text", "text": ""},)) == [{"type": "text", "text": ""}]


@pytest.mark.parametrize(
    "parts, words",
    [
        ([], "non-empty list of content parts"),
        ("text", "non-empty list"),
        ([{"type": "text", "text": 5}], "message[0]['text'] must be a str"),
        ([{"type": "text", "text": "\ud800"}], "surrogate"),
        ([{"type": "text", "text": "a", "cache_control": {}}], "message[0] has unsupported keys ['cache_control']"),
        (["hi"], "message[0] must be a dict with type 'text' or 'image_url', got a str"),
        ([{"type": "input_audio", "input_audio": {}}], "got 'input_audio'"),
        ([{"text": "no type"}], "got None"),
        ([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": CAT_URL}], "message[1]['image_url'] must be a dict"),
        ([{"type": "image_url", "image_url": {"url": 1}}], "with a str 'url'"),
        ([{"type": "image_url", "image_url": {"url": CAT_URL, "size": 1}}], "unsupported keys ['size']"),
        ([{"type": "image_url", "image_url": {"url": CAT_URL, "detail": "max"}}], "detail must be one of"),
        ([{"type": "image_url", "image_url": {"url": "/tmp/cat.png"}}], "pass a file path in images="),
        ([{"type": "image_url", "image_url": {"url": "ftp://h/cat.png"}}], "scheme 'ftp'"),
        ([{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!"}}], "malformed data URL"),
    ],
)
def test_check_parts_refuses(parts: Any, words: str) -> None:
    with pytest.raises(promptkit.ConfigurationError) as info:
        images.check_parts(parts)
    assert words in str(info.value)


def test_content_preview() -> None:
    assert images.content_preview("plain") == "plain"
    assert images.content_preview(None) == ""
    parts = [{"type": "text", "text": "what is this?"}, image_url_part(CAT_URL), {"type": "input_image"}, {"x": 1}]
    assert images.content_preview(parts) == "what is this? [image] [image]"


# -- errors: each before any I/O, naming the item ------------------------------------------------

Case = Callable[[Path], Tuple[Any, List[str]]]
MAX = images.MAX_IMAGE_BYTES


def _file(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _sparse(tmp_path: Path) -> str:
    path = tmp_path / "huge.png"
    with open(path, "wb") as file:
        file.write(make.png(1, 1))
        file.truncate(MAX + 1)  # a hole: no 20 MB written to disk
    return str(path)


ERRORS: Dict[str, Case] = {
    "unknown type": lambda t: ([_file(t, "cat.png", b"BM" + bytes(60))], ["images[0]", "cat.png", "not a PNG, JPEG, GIF or WEBP"]),
    "empty file": lambda t: ([_file(t, "empty.png", b"")], ["images[0]", "empty.png", "is empty"]),
    "missing path": lambda t: ([str(t / "missing.png")], ["images[0]", "missing.png", "does not exist"]),
    "directory": lambda t: ([t], ["images[0]", str(t), "is a directory"]),
    "path with NUL": lambda t: (["cat\x00.png"], ["images[0]", "not a valid file path"]),
    "ftp URL": lambda t: (["ftp://example.com/cat.png?sig=SECRET"], ["images[0]", "URL scheme 'ftp' is not supported"]),
    "file URL": lambda t: (["file:///etc/passwd"], ["URL scheme 'file' is not supported"]),
    "URL without host": lambda t: (["https:///cat.png?sig=SECRET"], ["images[0] is not a valid https URL"]),
    "URL with a space": lambda t: (["https://example.com/my cat.png"], ["not a valid https URL"]),
    "data URL without comma": lambda t: (["data:image/png;base64"], ["malformed data URL"]),
    "data URL not base64": lambda t: (["data:image/png,SECRET"], ["malformed data URL"]),
    "data URL not an image type": lambda t: (["data:text/plain;base64,aGk="], ["malformed data URL"]),
    "data URL bad base64": lambda t: (["data:image/png;base64,SECRET!!"], ["not valid base64"]),
    "data URL not an image": lambda t: ([data_url(b"SECRET bytes", "image/png")], ["images[0] (a data URL) is not a PNG"]),
    "data URL too large": lambda t: (["data:image/png;base64," + "A" * (MAX // 3 * 4 + 8)], ["over the 20971520 byte limit"]),
    "bytes of unknown type": lambda t: ([b"SECRET bytes"], ["images[0] (12 bytes) is not a PNG"]),
    "empty bytes": lambda t: ([b""], ["images[0] (0 bytes) is empty"]),
    "bytes too large": lambda t: ([make.png(1, 1) + bytes(MAX)], ["images[0]", "over the 20971520 byte limit"]),
    "file too large": lambda t: ([_sparse(t)], ["images[0]", "huge.png", "over the 20971520 byte limit"]),
    "second item": lambda t: ([make.png(1, 1), "gopher://x"], ["images[1]", "scheme 'gopher'"]),
    "not an image value": lambda t: ([42], ["images[0] must be a file path, bytes or an http(s) URL, got int"]),
    "a str, not a list": lambda t: ("cat.png", ["images must be a list", "got str"]),
    "bytes, not a list": lambda t: (make.png(1, 1), ["images must be a list", "got bytes"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
@pytest.mark.parametrize("method", ["send", "send_stream"])
def test_bad_images_fail_before_any_io(
    case: str, method: str, tmp_path: Path, server: MockServer, client: promptkit.Client
) -> None:
    given, words = ERRORS[case](tmp_path)
    conv = client.conversation()
    with pytest.raises(promptkit.ConfigurationError) as info:
        getattr(conv, method)("what is this?", images=given)
    message = str(info.value)
    for word in words:
        assert word in message
    assert "SECRET" not in message  # neither the bytes nor a URL's query are repeated
    assert server.requests == []
    assert conv.messages == []
    server.enqueue(MockReply.text("fine"))  # nothing was locked or staged: the next turn runs
    assert conv.send("hi").content == "fine"


def test_a_bad_image_fails_before_the_turn_lock(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall())
    conv = client.conversation()
    with conv.send_stream("first") as stream:  # a turn in flight holds the conversation
        with pytest.raises(promptkit.ConversationBusyError):
            conv.send_stream("second", images=[CAT_URL])
        with pytest.raises(promptkit.ConfigurationError, match="images\\[0\\]"):
            conv.send_stream("second", images=[b"not an image"])  # refused first: the lock was never asked for
        stream.cancel()
    assert len(server.requests) == 1


def test_a_bad_content_part_list_fails_before_any_io(server: MockServer, client: promptkit.Client) -> None:
    conv = client.conversation()
    with pytest.raises(promptkit.ConfigurationError, match="message\\[1\\]"):
        conv.send([{"type": "text", "text": "hi"}, {"type": "video_url", "video_url": {}}])
    assert server.requests == []


# -- token estimates -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, detail, expected",
    [
        ((1024, 1024), None, 765),  # OpenAI's examples
        ((1024, 1024), "high", 765),
        ((2048, 4096), "high", 1105),
        ((4096, 8192), "low", 85),
        ((1024, 1024), "auto", 765),  # auto counts as high: the model may choose it
        ((512, 512), None, 255),
        ((100, 100), None, 255),  # never scaled up: one tile
        ((513, 100), None, 425),  # two tiles
        ((1920, 1080), None, 1105),  # to 1365x768: 3x2 tiles
        ((10000, 1), None, 255),  # a sliver still counts one tile
        (None, None, 765),  # an unknown size (a URL) is taken as 1024x1024
        (None, "low", 85),
    ],
)
def test_openai_image_tokens(size: Any, detail: Any, expected: int) -> None:
    assert images.openai_image_tokens(size, detail) == expected


@pytest.mark.parametrize(
    "size, expected",
    [
        ((200, 200), 54),  # Anthropic's table: ~54, ~1334 and ~1590 tokens
        ((1000, 1000), 1334),
        ((1092, 1092), 1590),
        ((1568, 300), 628),  # at the long-edge limit: not scaled
        ((3136, 600), 628),  # scaled to 1568x300
        ((4000, 4000), 1600),  # over ~1,600 tokens: capped
        ((1, 1), 1),
        (None, 1600),
    ],
)
def test_anthropic_image_tokens(size: Any, expected: int) -> None:
    assert images.anthropic_image_tokens(size) == expected


def test_part_tokens_reads_the_size_of_each_part_form() -> None:
    big = make.png(2048, 4096)
    url = data_url(big, "image/png")
    payload = base64.b64encode(big).decode()
    assert images.part_tokens(image_url_part(url)) == 1105
    assert images.part_tokens(image_url_part(url, detail="low")) == 85
    assert images.part_tokens(image_url_part(CAT_URL)) == 765
    assert images.part_tokens({"type": "input_image", "image_url": url}) == 1105  # the Responses API form
    assert images.part_tokens({"type": "input_image", "image_url": url, "detail": "low"}) == 85
    anthropic = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": payload}}
    assert images.part_tokens(anthropic, "anthropic") == 1600  # 2048x4096 -> 784x1568: capped
    assert images.part_tokens({"type": "image", "source": {"type": "url", "url": CAT_URL}}, "anthropic") == 1600
    small = image_url_part(data_url(make.gif(200, 200), "image/gif"))
    assert images.part_tokens(small, "anthropic") == 54
    assert images.part_tokens(small) == 255


# -- end to end ------------------------------------------------------------------------------------


def test_send_with_a_path_bytes_and_a_url(tmp_path: Path, server: MockServer, client: promptkit.Client) -> None:
    jpeg = make.jpeg(640, 480)
    png = make.png(3, 2)
    path = tmp_path / "photo"
    path.write_bytes(jpeg)
    server.enqueue(MockReply.text("A cat."))
    conv = client.conversation(system_prompt="Describe images.")
    resp = conv.send("what is this?", images=[path, png, CAT_URL])
    assert resp.content == "A cat."
    content = [
        {"type": "text", "text": "what is this?"},
        image_url_part(data_url(jpeg, "image/jpeg")),
        image_url_part(data_url(png, "image/png")),
        image_url_part(CAT_URL),
    ]
    body = server.requests[0].body
    assert body["messages"] == [{"role": "system", "content": "Describe images."}, {"role": "user", "content": content}]
    assert conv.messages[1:] == [{"role": "user", "content": content}, {"role": "assistant", "content": "A cat."}]
    # The next turn sends the list again, and a turn without images stays a plain str.
    server.enqueue(MockReply.text("Yes."))
    conv.send("sure?")
    assert server.requests[1].body["messages"][1:] == conv.messages[1:3] + [{"role": "user", "content": "sure?"}]
    assert conv.messages[-2] == {"role": "user", "content": "sure?"}


def test_send_stream_and_a_content_part_list(server: MockServer, client: promptkit.Client) -> None:
    gif = make.gif(5, 5)
    server.enqueue(MockReply.text("One."), MockReply.text("Two."), MockReply.text("Three."))
    conv = client.conversation()
    with conv.send_stream("look", images=[gif]) as stream:
        assert stream.result().content == "One."
    assert server.requests[0].body["messages"][-1]["content"] == [
        {"type": "text", "text": "look"}, image_url_part(data_url(gif, "image/gif"))]  # fmt: skip
    parts = [image_url_part(CAT_URL, detail="low"), {"type": "text", "text": "and this?"}]
    conv.send(parts)
    parts[1]["text"] = "changed afterwards"
    assert server.requests[1].body["messages"][-1]["content"][1]["text"] == "and this?"
    assert conv.messages[-2]["content"] == [image_url_part(CAT_URL, detail="low"), {"type": "text", "text": "and this?"}]
    conv.send(images=[CAT_URL])  # images alone
    assert conv.messages[-2] == {"role": "user", "content": [image_url_part(CAT_URL)]}


def test_an_estimated_usage_counts_the_image(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.text("Tall.", usage=False))
    conv = client.conversation(model="gpt-4o")
    resp = conv.send("how tall?", images=[make.png(2048, 4096)])
    assert resp.usage.estimated
    sent = server.requests[0].body["messages"]
    text_only = [{"role": "user", "content": [{"type": "text", "text": "how tall?"}]}]
    assert resp.usage.prompt_tokens == tokens.count_messages(sent, "gpt-4o")
    assert resp.usage.prompt_tokens - tokens.count_messages(text_only, "gpt-4o") == 1105


def test_a_stored_conversation_with_images_resumes(tmp_path: Path, server: MockServer, client: promptkit.Client) -> None:
    store = promptkit.SQLiteStore(tmp_path / "chats.db")
    try:
        server.enqueue(MockReply.text("A cat."), MockReply.text("Grey."))
        first = client.conversation(conversation_id="pics", store=store)
        first.send("what is this?", images=[make.png(4, 4), CAT_URL])
        again = client.conversation(conversation_id="pics", store=store)
        assert again.messages == first.messages
        assert isinstance(again.messages[0]["content"], list)
        again.send("what colour?")
        assert server.requests[1].body["messages"][:2] == first.messages
    finally:
        store.close()



def test_the_responses_dialect_takes_the_parts_as_input_items() -> None:
    # The history's form is the dialects' input: the Responses API needs input_text and input_image.
    from promptkit._dialects.responses import ResponsesDialect

    png = make.png(1, 1)
    message = {"role": "user", "content": images.user_content("what?", [png, CAT_URL], detail="low")}
    items = ResponsesDialect().input([message], "https://api.openai.com/v1", stateless=True)
    assert items == [{"role": "user", "content": [
        {"type": "input_text", "text": "what?"},
        {"type": "input_image", "image_url": data_url(png, "image/png"), "detail": "low"},
        {"type": "input_image", "image_url": CAT_URL, "detail": "low"},
    ]}]  # fmt: skip
    assert tokens.count_messages(items, "gpt-4o") == tokens.count_messages([message], "gpt-4o")
