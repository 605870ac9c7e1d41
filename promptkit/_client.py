"""Client: configuration and the shared connection pool."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence
from urllib.parse import urlparse

from ._conversation import Conversation
from ._dialects import OPENAI, dialect_for
from ._secrets import check_api_key, safe_url
from ._validate import check_model
from ._errors import ConfigurationError
from ._limits import Limits
from .pricing import PriceTable
from ._retry import RetryPolicy
from ._turn import TurnSettings
from ._types import Timeout

if TYPE_CHECKING:  # pragma: no cover - loaded only for a client with hooks or telemetry
    from ._hooks import HookRunner, Hooks
    from ._telemetry import Telemetry

__all__ = ["Client", "ConversationIndex", "OPENAI_BASE_URL"]

logger = logging.getLogger(__name__)

OPENAI_BASE_URL = OPENAI.base_url
DEFAULT_MODEL = OPENAI.model  # when neither model= nor PROMPTKIT_MODEL names one
_KEYED_HOSTS = frozenset({"api.openai.com", "api.anthropic.com"})  # servers that never work without a key


def _needs_key(base_url: str) -> bool:
    host = (urlparse(base_url).hostname or "").lower()
    return host in _KEYED_HOSTS


class Client:
    """Talks to one OpenAI-compatible server. Thread-safe: share one per process.

    Args:
        api_key: the API key; default ``OPENAI_API_KEY`` (``ANTHROPIC_API_KEY`` with
            ``api="anthropic"``). It may be omitted for servers that need none
            (Ollama, vLLM, llama.cpp), but not for OpenAI or Anthropic.
        base_url: default ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``
            (with ``api="anthropic"``: ``ANTHROPIC_BASE_URL``, else
            ``https://api.anthropic.com/v1``).
        model: the default model of conversations; default ``PROMPTKIT_MODEL``,
            else ``"gpt-4o-mini"`` (``"claude-haiku-4-5"`` with ``api="anthropic"``).
        timeout: a :class:`~promptkit.Timeout`, or a number of seconds (idle).
        max_retries: retries before any content (connection errors, 408, 409, 429, 5xx).
        session: a ``requests.Session`` to use (its TLS settings and adapters are
            kept, and it is not closed by :meth:`close`). One is created otherwise.
        api: the wire dialect: ``"chat"`` (Chat Completions, ``/chat/completions``,
            the default), ``"responses"`` (the OpenAI Responses API,
            ``/responses``) or ``"anthropic"`` (Anthropic Messages, ``/messages``,
            with ``x-api-key`` and ``anthropic-version`` headers). Events, responses, usage, cost and history are the
            same on every dialect.
        pool_size: connections kept open to the server (created sessions only).
        pricing: price overrides ``{model: {"input", "cached_input", "output"}}``,
            a :class:`~promptkit.pricing.PriceTable`, or ``"genai-prices"``.
        headers: extra HTTP headers sent with every request.
        max_rounds: the most request rounds a turn's tool loop may take.
        tool_workers: threads running one round's tool calls at once (1 = one by one).
        limits: a :class:`promptkit.Limits`: how much a server's reply may make
            promptkit hold (the defaults suit any real server).
        store: the default conversation store of :meth:`conversation` (``None``:
            history lives in each Conversation object only).
        hooks: :class:`~promptkit.Hooks` told what happens in each turn
            (requests, first tokens, rounds, retries, tools, outcomes); see
            :class:`~promptkit.LoggingHooks` for structured logging.
        telemetry: ``True`` or a :class:`~promptkit.Telemetry`: OpenTelemetry
            GenAI spans and metrics for every turn (needs ``pip install
            'promptkit[otel]'``); off by default.

    Raises:
        ConfigurationError: bad options, or no key for OpenAI's URL (before any I/O).
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        base_url: Optional[str] = None,
        model: Optional[str] = None,
        timeout: "Timeout | float | None" = None,
        max_retries: int = 2,
        session: Optional[Any] = None,
        *,
        api: str = "chat",
        pool_size: int = 10,
        pricing: Any = None,
        headers: Optional[Mapping[str, str]] = None,
        max_rounds: int = 10,
        tool_workers: int = 4,
        store: Any = None,
        limits: Optional[Limits] = None,
        hooks: Optional[Sequence["Hooks"]] = None,
        telemetry: "bool | Telemetry | None" = None,
    ) -> None:
        dialect = dialect_for(api)
        provider = dialect.provider
        if api_key is None:
            api_key = os.environ.get(provider.key_variable) or None
        if base_url is None:
            base_url = os.environ.get(provider.url_variable) or provider.base_url
        if not isinstance(base_url, str):
            raise ConfigurationError(f"base_url must be a str, got {type(base_url).__name__}")
        base_url = base_url.strip()
        try:
            parsed = urlparse(base_url)
            valid = parsed.scheme in ("http", "https") and bool(parsed.hostname)
            parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            valid = False
        if not valid:
            raise ConfigurationError(f"base_url must be an http(s) URL, got {safe_url(base_url)!r}")
        api_key = check_api_key(api_key)
        if not api_key and _needs_key(base_url):
            raise ConfigurationError(
                f"no API key: pass api_key=... or set {provider.key_variable} "
                "(a key is optional only for other servers, given with base_url)"
            )
        if model is None:
            model = os.environ.get("PROMPTKIT_MODEL", "").strip() or provider.model
        check_model(model)
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ConfigurationError(f"max_retries must be an int >= 0, got {max_retries!r}")
        for name, value in (("pool_size", pool_size), ("max_rounds", max_rounds), ("tool_workers", tool_workers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, got {value!r}")
        self.model = model
        self.timeout = Timeout.coerce(timeout)
        self.max_retries = max_retries
        self.prices = PriceTable.from_spec(pricing)
        self.store = store
        self._has_key = bool(api_key)
        self._policy = RetryPolicy(max_retries=max_retries)
        self._max_rounds = max_rounds
        self._tool_workers = tool_workers
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a promptkit.Limits, got {type(limits).__name__}")
        self.limits = Limits() if limits is None else limits
        self.hooks: Optional["HookRunner"] = None  # none: no hook module is even loaded
        if hooks or telemetry:
            from ._hooks import HookRunner, Hooks
            from ._telemetry import make_hooks

            hook_list = list(hooks or ())
            for hook in hook_list:
                if not isinstance(hook, Hooks):
                    raise ConfigurationError(f"hooks must be promptkit.Hooks instances, got {type(hook).__name__}")
            otel = make_hooks(telemetry)  # None when off: nothing of OpenTelemetry is imported
            if otel is not None:
                hook_list.append(otel)
            self.hooks = HookRunner(hook_list) if hook_list else None
        from ._transport import Transport  # requests loads with the first Client, not with `import promptkit`

        self.api = api
        self._dialect = dialect
        self._transport = Transport(
            base_url=base_url,
            api_key=api_key,
            session=session,
            pool_size=pool_size,
            headers=headers,
            path=dialect.path,
            auth_headers=dialect.auth_headers(api_key),
        )
        # What the client shows of its URL: never the credentials of a user:password@ part.
        self.base_url = self._transport.base_url

    def __repr__(self) -> str:
        key = "set" if self._has_key else "none"
        return f"Client(base_url={self.base_url!r}, model={self.model!r}, api={self.api!r}, api_key={key})"

    def conversation(
        self,
        system_prompt: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
        store: Any = None,
        conversation_id: Optional[str] = None,
        model: Optional[str] = None,
        *,
        timeout: "Timeout | float | None" = None,
        max_rounds: Optional[int] = None,
        max_cost: Optional[float] = None,
        variables: Optional[Mapping[str, Any]] = None,
        **params: Any,
    ) -> Conversation:
        """Start a conversation.

        Args:
            system_prompt: the system message, first in the history. ``{{name}}``
                placeholders are filled from ``variables`` (and ``conv.set_var``);
                a turn with an unresolved one raises ConfigurationError.
            tools: functions decorated with :func:`promptkit.tool`, :class:`promptkit.Tool`
                objects, or OpenAI tool dicts (answer those with ``on_tool`` or
                ``add_tool_result``).
            store: a conversation store (:class:`promptkit.MemoryStore`,
                :class:`promptkit.SQLiteStore`, :class:`promptkit.RedisStore` or your
                own :class:`~promptkit.stores.ConversationStore`); default: the
                client's ``store``. ``None`` keeps the history in the Conversation only.
            conversation_id: the id; ``conv_<time_ns>`` by default. With a store
                holding that id, the conversation resumes: system prompt, history,
                totals and pending tool calls.
            model: this conversation's model (default: a resumed conversation's
                stored model, else the client's).
            timeout: this conversation's timeouts (default: the client's).
            max_rounds: the tool loop's limit (default: the client's).
            max_cost: a USD budget for the whole conversation. A turn that would
                start over it raises :class:`~promptkit.BudgetExceededError`; a
                stream that crosses it is stopped with that error.
            variables: values for the system prompt's ``{{name}}`` placeholders.
            **params: extra request fields: ``temperature``, ``max_tokens``, ...;
                ``response_format`` (a pydantic model, a dataclass or attrs class, a
                JSON schema dict, or an OpenAI response_format dict) asks for
                structured output: each content event carries ``event.parsed``, the
                value so far, and ``Response.parsed`` the validated value.
        """
        self._transport.check_open()
        if model is not None:
            check_model(model)
        params = dict(params)
        response_format = params.pop("response_format", None)
        output = None
        if response_format is not None:
            from ._structured import OutputFormat

            output = OutputFormat.create(response_format)
        settings = TurnSettings(
            model=model or self.model,
            params=params,
            timeout=self.timeout if timeout is None else Timeout.coerce(timeout),
            policy=self._policy,
            prices=self.prices,
            max_rounds=self._max_rounds if max_rounds is None else max_rounds,
            tool_workers=self._tool_workers,
            limits=self.limits,
            dialect=self._dialect,
            hooks=self.hooks,
            output=output,
        )
        return Conversation(
            transport=self._transport,
            settings=settings,
            conversation_id=conversation_id,
            system_prompt=system_prompt,
            tools=tools,
            max_cost=max_cost,
            variables=variables,
            store=self.store if store is None else store,
            stored_model=model is None,
        )

    def conversations(self, store: Any = None) -> "ConversationIndex":
        """The conversations of ``store`` (default: the client's): list, resume and delete them."""
        chosen = self.store if store is None else store
        if chosen is None:
            raise ConfigurationError("conversations() needs a store: pass one here or to Client(store=...)")
        return ConversationIndex(self, chosen)

    def close(self) -> None:
        """Close the client: cancel its active streams and wait for their workers (a few seconds
        at most), close the connection pool when the client created its session, and make later
        turns raise :class:`~promptkit.ClientClosedError`. Idempotent."""
        self._transport.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._transport.closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


class ConversationIndex:
    """The conversations kept in one store (see :meth:`Client.conversations`)."""

    def __init__(self, client: Client, store: Any) -> None:
        self._client = client
        self._store = store

    def list(self) -> "list[str]":
        """The ids of the stored conversations."""
        return list(self._store.list_ids())

    def get(self, conversation_id: str, **kwargs: Any) -> Conversation:
        """Resume a stored conversation (``kwargs`` as for :meth:`Client.conversation`).

        Raises:
            KeyError: no conversation with that id is stored.
        """
        if self._store.load(conversation_id) is None:
            raise KeyError(conversation_id)
        return self._client.conversation(conversation_id=conversation_id, store=self._store, **kwargs)

    def delete(self, conversation_id: str) -> bool:
        """Delete a stored conversation; ``False`` when there was none."""
        return bool(self._store.delete(conversation_id))
