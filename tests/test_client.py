"""Client configuration: keys, URLs, options, repr."""

from __future__ import annotations

import pytest

import promptkit


def test_no_key_for_openai_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(promptkit.ConfigurationError, match="OPENAI_API_KEY"):
        promptkit.Client()
    assert issubclass(promptkit.ConfigurationError, promptkit.PromptKitError)


def test_keyless_other_server_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with promptkit.Client(base_url="http://localhost:11434/v1") as client:
        assert "api_key=none" in repr(client)


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-xyz")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    with promptkit.Client() as client:
        assert client.base_url == "http://127.0.0.1:9/v1"
        assert "sk-from-env-xyz" not in repr(client) and "api_key=set" in repr(client)
        assert "sk-from-env-xyz" not in str(client.__dict__.get("base_url"))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"base_url": "ftp://x"}, "base_url"),
        ({"base_url": "not a url"}, "base_url"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout": "soon"}, "timeout"),
        ({"timeout": promptkit.Timeout(idle=5)}, None),
        ({"pool_size": 0}, "pool_size"),
        ({"model": ""}, "model"),
    ],
)
def test_options_are_validated(kwargs: dict, match: "str | None") -> None:
    kwargs = {"api_key": "k", **kwargs}
    if match is None:
        promptkit.Client(**kwargs).close()
        return
    with pytest.raises(promptkit.ConfigurationError, match=match):
        promptkit.Client(**kwargs)


def test_timeout_coercion() -> None:
    assert promptkit.Timeout.coerce(7).idle == 7.0
    assert promptkit.Timeout.coerce(None) == promptkit.Timeout()
    defaults = promptkit.Timeout()
    assert defaults.connect and defaults.idle and defaults.total  # all finite by default
    with pytest.raises(promptkit.ConfigurationError):
        promptkit.Timeout(idle=0)
    assert promptkit.Timeout(total=None).total is None


def test_user_session_is_not_closed() -> None:
    import requests

    session = requests.Session()
    closed = []
    session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    promptkit.Client(api_key="k", session=session).close()
    assert closed == []


def test_owned_session_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    created: list = []
    closed: list = []
    real_init, real_close = requests.Session.__init__, requests.Session.close

    def init(self: requests.Session) -> None:
        created.append(self)
        real_init(self)

    def close(self: requests.Session) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(requests.Session, "__init__", init)
    monkeypatch.setattr(requests.Session, "close", close)
    client = promptkit.Client(api_key="k")
    assert len(created) == 1  # the session the client made (and owns)
    assert closed == []
    client.close()
    assert closed == created
