"""The ``promptkit`` command line: ``promptkit chat`` (also ``python -m promptkit chat``).

An interactive chat that streams each reply as it arrives and prints the
streaming example's cost / latency / tokens line after every turn. Ctrl-C
during a reply stops it (the upstream request is cancelled, the partial text
is kept, as chat UIs do after "stop generating"); Ctrl-C or Ctrl-D at the
prompt leaves. With stdin not a terminal, each input line is one turn and
replies go to stdout, everything else to stderr. With neither an API key nor
a base URL, it starts the embedded :class:`promptkit.testing.MockServer`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

from ._version import __version__
from ._client import Client
from ._conversation import Conversation
from ._dialects import APIS, dialect_for
from ._errors import AuthenticationError, BadRequestError, ConfigurationError, NotFoundError, PromptKitError
from ._images import content_preview
from .stores import ConversationStore
from .stores import open_store as open_named_store
from .stores._spec import _REDIS_SCHEMES, STORE_SPEC_HELP
from ._stream import Stream
from ._types import Response, StreamEvent

__all__ = ["main", "build_parser", "ChatSession"]

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
MOCK_DELAY = 0.03  # seconds between the mock's deltas: slow enough to see the reply stream in
COMMANDS = (
    ("/history", "list the conversation's messages"),
    ("/cost", "the conversation's total cost and tokens"),
    ("/reset", "start a new conversation (same options and store)"),
    ("/help", "this list"),
    ("/quit", "leave (also /exit, Ctrl-D, or Ctrl-C at the prompt)"),
)
_COMMANDS = "\n".join(f"  {name:<10} {text}" for name, text in COMMANDS)

_EPILOG = """\
commands at the prompt:
{commands}
  //text     send "/text" (a message that starts with a slash)

Ctrl-C stops the reply being streamed (its partial text is kept); at the prompt it leaves, as Ctrl-D does.
With neither a key nor a base URL, promptkit's embedded mock server answers (an offline demo). A base
URL needs no key (Ollama, vLLM). Piped input: each line is one turn; replies go to stdout, the rest to
stderr; an error prints one line and exits 1.

examples:
  promptkit chat --base-url http://localhost:11434/v1 --model llama3.2 --temperature 0.2
  promptkit chat --store sqlite:chats.db --conversation-id work
  echo "Tell me a joke." | promptkit chat --json
"""


def _store_spec(value: str) -> str:
    """Check a ``--store`` value (the store is opened later, after the options are parsed)."""
    if value == "memory" or (value.startswith("sqlite:") and len(value) > 7) or value.startswith(_REDIS_SCHEMES):
        return value
    raise argparse.ArgumentTypeError(f"expected {STORE_SPEC_HELP}, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``promptkit`` command."""
    parser = argparse.ArgumentParser(prog="promptkit", description="promptkit's command line.")
    parser.add_argument("--version", action="version", version=f"promptkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    chat = commands.add_parser(
        "chat",
        help="chat with a model, streaming its replies",
        description="Chat with a model, streaming each reply as it arrives, with its cost, latency and tokens.",
        epilog=_EPILOG.format(commands=_COMMANDS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chat.add_argument("--model", help="the model (default: $PROMPTKIT_MODEL, else gpt-4o-mini)")
    chat.add_argument("--system", metavar="PROMPT", help="the system prompt")
    chat.add_argument("--base-url", metavar="URL", help="the server's base URL (default: $OPENAI_BASE_URL, else OpenAI)")
    chat.add_argument("--api-key", metavar="KEY", help="the API key (default: $OPENAI_API_KEY)")
    chat.add_argument("--api", choices=APIS, default="chat",
                      help="the wire dialect: chat (Chat Completions, the default), responses (the Responses API) "
                           "or anthropic (Anthropic Messages; key and URL from $ANTHROPIC_API_KEY, $ANTHROPIC_BASE_URL)")
    chat.add_argument("--show-reasoning", action="store_true",
                      help="show the model's reasoning (when the server streams it) before its reply")
    chat.add_argument("--store", metavar="SPEC", type=_store_spec,
                      help="keep the history in 'sqlite:PATH' (survives restarts) or 'memory'")
    chat.add_argument("--conversation-id", metavar="ID", help="resume (or start) this conversation of --store")
    chat.add_argument("--temperature", type=float, help="sampling temperature, e.g. 0.7")
    chat.add_argument("--max-tokens", type=int, metavar="N", help="the most tokens a reply may have")
    chat.add_argument("--json", action="store_true",
                      help="print each stream event as one JSON line (event.to_dict()) instead of text")
    chat.add_argument("-v", "--verbose", action="count", default=0, help="log diagnostics to stderr (-vv: debug)")
    return parser


def stats(resp: Response) -> str:
    """The streaming example's line: ``💰 Cost: $0.0032 | ⏱️  Latency: 1234ms | 🎫 Tokens: 156``."""
    cost, latency, tokens = resp.summary().split(" | ")
    return f"💰 {cost} | ⏱️  {latency} | 🎫 {tokens}"


def _cut(value: Any, width: int = 60) -> str:
    text = str(value or "").replace("\n", " ")
    return text if len(text) <= width else text[:width] + "..."


def _one_line(error: BaseException) -> str:
    """``Type: message`` on one line (server messages may hold newlines)."""
    message = " ".join(str(error).split()) or "(no message)"
    hint = ""
    if isinstance(error, AuthenticationError):
        hint = " (check --api-key or OPENAI_API_KEY)"
    elif isinstance(error, (BadRequestError, NotFoundError)) and "model" in message.lower():
        hint = " (choose the model with --model or PROMPTKIT_MODEL)"
    return f"{type(error).__name__}: {message}{hint}"


def _shown(messages: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [m for m in messages if m.get("role") != "system"]


@contextlib.contextmanager
def _sigint_cancels(stream: Stream, pressed: threading.Event) -> Iterator[None]:
    """While a reply streams, make Ctrl-C cancel it instead of raising KeyboardInterrupt.

    The stream then ends the usual way (a ``done`` event, ``finish_reason ==
    "cancelled"``, the turn committed), so no exception raised at an arbitrary
    point of the loop can leave the conversation mid-turn.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set signal handlers (and only it receives signals)
        return

    def cancel() -> None:
        logger.info("Ctrl-C: cancelling the reply")
        stream.cancel()

    def on_sigint(signum: int, frame: Any) -> None:
        pressed.set()
        # Not stream.cancel() (nor logging) right here: the handler runs in the main thread between
        # two bytecodes, maybe while it holds the stream queue's lock, which cancel() takes too.
        threading.Thread(target=cancel, name="promptkit-cli-cancel", daemon=True).start()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


class ChatSession:
    """One chat session: reads lines, runs turns and commands, renders the replies.

    Args:
        client: the client to talk through.
        args: the parsed ``chat`` options.
        store: where conversations are kept, or ``None``.
        interactive: stdin is a terminal (a prompt; Ctrl-C stops a reply) rather than piped.
        stdin: where lines are read when not interactive (default: ``sys.stdin``).
        stdout: replies, command output and ``--json`` lines (default: ``sys.stdout``).
        stderr: errors, and banners and cost lines when not an interactive text chat.
    """

    def __init__(self, client: Client, args: argparse.Namespace, store: Optional[ConversationStore], *,
                 interactive: bool, stdin: Optional[TextIO] = None, stdout: Optional[TextIO] = None,
                 stderr: Optional[TextIO] = None) -> None:
        self.client, self.store, self.interactive, self.json = client, store, interactive, bool(args.json)
        self.show_reasoning = bool(getattr(args, "show_reasoning", False))
        self.stdin, self.out, self.err = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
        # Banners, prompts and cost lines: on the terminal in a text chat, else off stdout, so
        # that piped replies (or --json lines) can be captured as they are.
        self.ui = self.out if interactive and not self.json else self.err
        self.system = args.system
        self.params = {k: v for k, v in (("temperature", args.temperature), ("max_tokens", args.max_tokens)) if v is not None}
        self._mid_line = False  # stdout's cursor is after "Assistant: " or streamed text
        self.log: Optional[_LogHandler] = None  # holds log lines back while a reply streams (main sets it)
        self.conv = self.start(args.conversation_id)

    # -- output -----------------------------------------------------------------
    def say(self, *lines: str, to: Optional[TextIO] = None) -> None:
        """Print whole lines (to the UI stream by default); blank ones only space out a terminal."""
        self.end_line()
        target = to or self.ui
        for line in lines:
            if line or self.interactive:
                target.write(line + "\n")
        target.flush()

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()
        self._mid_line = True

    def end_line(self) -> None:
        """End the line of a streamed reply, so that what follows starts on its own line."""
        if self._mid_line:
            self._mid_line = False
            self.out.write("\n")
            self.out.flush()

    def _json(self, obj: Dict[str, Any]) -> None:
        self.say(json.dumps(obj, ensure_ascii=False, default=str), to=self.out)

    # -- session ------------------------------------------------------------------
    def start(self, conversation_id: Optional[str] = None) -> Conversation:
        """Start (or, with a store holding ``conversation_id``, resume) a conversation and announce it."""
        conv = self.client.conversation(system_prompt=self.system, store=self.store,
                                        conversation_id=conversation_id, **self.params)
        count = len(_shown(conv.messages))
        if count:
            self.say(f"🤖 Resumed conversation {conv.id} ({count} messages; /history lists them)", "")
        else:
            self.say(f"🤖 Streaming conversation started (ID: {conv.id})", "")
        return conv

    def run(self) -> int:
        """Read and handle lines until the input ends or the user leaves; returns the exit status."""
        if self.interactive:
            self.say("Type a message. /help lists the commands; Ctrl-C stops a reply; Ctrl-D leaves.", "")
        while True:
            try:
                line = self._read()
            except (EOFError, KeyboardInterrupt):
                # Ctrl-D or Ctrl-C at the prompt, or the end of piped input: the normal way out.
                self.say("")
                return EXIT_OK
            text = line.strip()
            if text.startswith("/") and not text.startswith("//"):
                code = self.command(text)
            else:
                code = self.turn(text[1:] if text.startswith("//") else text) if text else None
            if code is not None:
                return code

    def _read(self) -> str:
        if not self.interactive:
            line = self.stdin.readline()
            if not line:
                raise EOFError
            return line
        if self.ui is self.out:
            return input("User: ")  # input() draws the prompt itself, so line editing redraws it right
        self.ui.write("User: ")
        self.ui.flush()
        return input()

    # -- turns ----------------------------------------------------------------------
    def turn(self, text: str) -> Optional[int]:
        """Send ``text`` and render the reply; returns an exit status to end the session, else ``None``.

        Log lines (an unpriced model, a token-estimate fallback) logged meanwhile are
        shown after the turn's cost line, never inside the reply's text.
        """
        log = self.log
        if log is not None:
            log.pause()
        try:
            return self._turn(text)
        finally:
            if log is not None:
                log.resume()

    def _turn(self, text: str) -> Optional[int]:
        if self.ui is self.out:
            self._write("Assistant: ")  # now: the user sees the turn start while the headers are awaited
        pressed = threading.Event()
        stream: Optional[Stream] = None
        final: Optional[Response] = None
        error: Optional[BaseException] = None
        try:
            stream = self.conv.send_stream(text)
            with _sigint_cancels(stream, pressed):
                final, error = self._consume(stream)
        except KeyboardInterrupt:
            # Ctrl-C while waiting for the response headers: send_stream released the
            # conversation and nothing was committed. In the instant before the handler was
            # set, closing the stream ends it as a cancelled turn, as a later Ctrl-C would.
            pressed.set()
            if stream is not None:
                stream.close()
                with contextlib.suppress(PromptKitError):
                    final = stream.result()
        except PromptKitError as exc:  # raised by send_stream: an HTTP status, connection or option error
            if self.json:
                self._json(StreamEvent("error", error=exc).to_dict())
            return self._failed(exc)
        if error is not None:
            return self._failed(error)
        self.end_line()
        if final is None or final.cancelled:
            self.say("[stopped]")
        elif final.finish_reason in ("length", "content_filter"):
            self.say(f"[cut off by the server: finish_reason={final.finish_reason}]")  # else it looks complete
        if final is not None and not self.json:
            self.say("", stats(final), "")
        if pressed.is_set() and not self.interactive:
            return EXIT_INTERRUPTED  # a script interrupted with Ctrl-C stops; it does not read on
        return None

    def _consume(self, stream: Stream) -> Tuple[Optional[Response], Optional[BaseException]]:
        """Render the stream's events; returns the Response (``done``) or the error (``error``)."""
        final: Optional[Response] = None
        error: Optional[BaseException] = None
        thinking = False  # the reasoning shown so far is on an open line
        for event in stream:
            if self.json:
                self._json(event.to_dict())
            elif event.type == "reasoning" and self.show_reasoning:
                self._write(event.reasoning if thinking else f"[reasoning] {event.reasoning}")
                thinking = True
            elif event.type == "content":  # the CLI offers no tools, so no tool_call events come
                if thinking:
                    self._write("\n[answer] ")
                    thinking = False
                self._write(event.content)
            if event.type == "done":
                final = event.final
            elif event.type == "error":
                error = event.error
        return final, error

    def _failed(self, error: BaseException) -> Optional[int]:
        """Report a failed turn on one line; piped input and bad credentials end the session."""
        self.say(f"error: {_one_line(error)}", to=self.err)
        logger.debug("the turn failed", exc_info=error)
        if not self.interactive or isinstance(error, (AuthenticationError, ConfigurationError)):
            return EXIT_ERROR  # no later turn can succeed, or a script must not go on after a failure
        self.say("")
        return None

    # -- commands -------------------------------------------------------------------
    def command(self, text: str) -> Optional[int]:
        """Run a slash command; returns an exit status to end the session, else ``None``."""
        name = text.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return EXIT_OK
        if name == "/help":
            self.say(*_EPILOG.format(commands=_COMMANDS).split("\n\n")[:2], "")
        elif name == "/history":
            self.show_history()
        elif name == "/cost":
            self.show_cost()
        elif name == "/reset":
            self.conv = self.start()
        else:
            self.say(f"error: unknown command {name}; /help lists them (//text sends '/text')", to=self.err)
            if not self.interactive:
                return EXIT_USAGE  # a script with a typo must not carry on as if it had worked
        return None

    def show_history(self) -> None:
        """Print the numbered history, as the streaming example lists it."""
        messages = self.conv.messages
        if self.json:
            return self._json({"type": "history", "conversation_id": self.conv.id, "messages": messages})
        lines = ["📜 Conversation History:"]
        for number, message in enumerate(_shown(messages), 1):
            calls = message.get("tool_calls")
            text = "calls " + ", ".join(c["function"]["name"] for c in calls) if calls else _cut(content_preview(message.get("content")))
            lines.append(f"  {number}. [{message['role']}] {text}")
        self.say(*lines, *([] if len(lines) > 1 else ["  (no messages yet)"]), "", to=self.out)

    def show_cost(self) -> None:
        """Print the conversation's totals: every turn, failed and stopped ones included."""
        usage, cost = self.conv.usage, self.conv.total_cost
        if self.json:
            return self._json({"type": "cost", "conversation_id": self.conv.id, "total_cost": cost, "usage": usage.to_dict()})
        mark = "~" if usage.estimated else ""
        money = Response(cost=cost).summary().split(" | ")[0][len("Cost: "):]  # the per-turn line's format
        self.say(f"💰 Total cost: {money} | 🎫 Tokens: {mark}{usage.total_tokens} (prompt "
                 f"{usage.prompt_tokens}, completion {usage.completion_tokens}) | 🆔 {self.conv.id}", "", to=self.out)


class _LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Logs to stderr, first ending a streamed reply's line (``before``) so a warning does not run into it.

    While a turn runs (:meth:`pause`), records wait and are written after it
    (:meth:`resume`): a warning logged by the stream's worker thread must not
    land in the middle of the reply's text.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.before: Callable[[], None] = lambda: None  # becomes the session's end_line
        self._held: Optional[List[logging.LogRecord]] = None

    # Not hold/release: logging.Handler.release() is the handler's lock release.
    def pause(self) -> None:
        """Keep records back until :meth:`resume`."""
        with self.lock:  # type: ignore[union-attr]
            self._held = []

    def resume(self) -> None:
        """Write the records kept back, in order, and stop holding them back."""
        with self.lock:  # type: ignore[union-attr]
            held, self._held = self._held or [], None
        for record in held:
            self.handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        if self._held is not None:  # handle() holds self.lock here
            self._held.append(record)
            return
        self.before()
        super().emit(record)


class _ChatFormatter(logging.Formatter):
    """One short line per record for a chat screen: ``note: ...`` for warnings, ``error: ...`` above."""

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split())
        return f"{'note' if record.levelno < logging.ERROR else 'error'}: {message}"


def open_store(spec: Optional[str]) -> Optional[ConversationStore]:
    """The store a ``--store`` value names, or ``None`` (see :func:`promptkit.stores.open_store`)."""
    if spec is None:
        return None
    logger.info("conversations are kept in %s", spec)
    return open_named_store(spec)


@contextlib.contextmanager
def open_client(args: argparse.Namespace, stderr: TextIO) -> Iterator[Client]:
    """A client for the configured server, or for an embedded mock server when none is configured."""
    provider = dialect_for(args.api).provider
    key_variable, url_variable = provider.key_variable, provider.url_variable
    api_key = args.api_key or os.environ.get(key_variable) or None
    base_url = args.base_url or os.environ.get(url_variable) or None
    options: Dict[str, Any] = {"api": args.api} if args.model is None else {"model": args.model, "api": args.api}
    if api_key or base_url:
        # A base URL without a key is a keyless local server (Ollama, vLLM): no mock.
        with Client(api_key=api_key, base_url=base_url, **options) as client:
            logger.info("talking to %s", client.base_url)
            yield client
        return
    from .testing import MockServer  # only the offline demo needs it

    stderr.write(f"ℹ️  No {key_variable} or {url_variable}: using promptkit's embedded mock server "
                 "(promptkit.testing.MockServer).\n")
    stderr.flush()
    with MockServer(default_delay=MOCK_DELAY) as server, Client(base_url=server.url, **options) as client:
        yield client


def _configure_output(verbose: int) -> _LogHandler:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")  # a terminal that cannot show an emoji gets "?", not a crash
    handler = _LogHandler(sys.stderr)
    # -v: diagnostics with their origin; by default only warnings, as a short note line.
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s") if verbose else _ChatFormatter())
    logging.basicConfig(level=logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING,
                        handlers=[handler])
    return handler


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the ``promptkit`` command; returns the exit status (0, 1 on an error, 2 on bad usage).

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    log_handler = _configure_output(args.verbose)
    if args.conversation_id and args.store is None:
        sys.stderr.write("note: without --store the conversation is not saved, so it cannot be resumed later\n")
    interactive = sys.stdin is not None and sys.stdin.isatty()
    if interactive:
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401 - importing it gives input() line editing and history
    try:
        with contextlib.ExitStack() as stack:
            store = open_store(args.store)
            if store is not None:
                stack.callback(store.close)
            client = stack.enter_context(open_client(args, sys.stderr))
            session = ChatSession(client, args, store, interactive=interactive)
            log_handler.before = session.end_line
            session.log = log_handler
            return session.run()
    except KeyboardInterrupt:  # Ctrl-C while starting or closing: leave quietly
        sys.stderr.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout's reader left (`promptkit chat | head -1`): point stdout at devnull so that
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except PromptKitError as error:  # a bad option, a store that cannot be opened
        sys.stderr.write(f"error: {_one_line(error)}\n")
        return EXIT_ERROR
    except Exception as error:  # the CLI is a UI: one line, never a traceback (-vv logs it)
        logger.debug("unexpected error", exc_info=True)
        sys.stderr.write(f"error: unexpected {_one_line(error)} (run with -vv for details)\n")
        return EXIT_ERROR
