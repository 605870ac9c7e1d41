"""Model prices and the cost of a turn.

Prices are USD per 1M tokens. :class:`PriceTable` resolves a model name (with
provider prefixes and dated snapshot suffixes) to a :class:`ModelPrice` and
turns a :class:`~promptkit._types.Usage` into a cost. A model with no price
costs 0.0 and is reported as unknown, with one warning per model per process.
The table is the fallback: a cost the server reports (LiteLLM, OpenRouter)
wins over it (see :class:`~promptkit._accounting.TurnAccount`).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Set, Tuple, Union

import attrs

from ._secrets import log_text
from ._errors import ConfigurationError
from ._money import format_cost
from ._price_data import PRICES_AS_OF, TABLE

if TYPE_CHECKING:  # pragma: no cover
    from ._types import Usage

__all__ = [
    "ModelPrice", "PriceTable", "GenAIPricesTable", "PRICES_AS_OF", "BUILTIN_PRICES", "normalize_model", "format_cost",
]  # fmt: skip

logger = logging.getLogger(__name__)

_PRICE_FIELDS = (
    "input", "cached_input", "output", "reasoning", "audio_input", "audio_output", "cache_write", "cache_write_1h",
)  # fmt: skip


def _to_float(value: Any) -> Any:
    # Decimal and Fraction are welcome (prices are often written as Decimals);
    # anything else is left alone so that the validator can name the field.
    if isinstance(value, (int, float, Decimal, Fraction)) and not isinstance(value, bool):
        return float(value)
    return value


def _check_price(instance: Any, attribute: "attrs.Attribute[Any]", value: Any) -> None:
    if value is None and attribute.name not in ("input", "output"):
        return
    if not isinstance(value, float) or not math.isfinite(value) or value < 0:
        raise ConfigurationError(
            f"ModelPrice.{attribute.name} must be a non-negative number of USD per 1M tokens, got {value!r}"
        )


def _price_field(*, optional: bool) -> Any:
    if optional:
        return attrs.field(default=None, converter=_to_float, validator=_check_price, kw_only=True)
    return attrs.field(converter=_to_float, validator=_check_price)


@attrs.frozen
class ModelPrice:
    """Prices of one model in USD per 1M tokens.

    Attributes:
        input: uncached prompt tokens.
        output: completion tokens that are not reasoning tokens.
        cached_input: cached prompt tokens (cache reads); defaults to ``input``.
        reasoning: reasoning tokens; defaults to ``output``.
        audio_input: audio prompt tokens; ``None`` bills them as text.
        audio_output: audio completion tokens; ``None`` bills them as text.
        cache_write: prompt tokens written to the prompt cache
            (``Usage.cache_write_tokens``; Anthropic's 5-minute cache writes);
            defaults to ``input``, which is what providers without cache
            writes charge.
        cache_write_1h: prompt tokens written to a 1-hour cache
            (``Usage.cache_write_1h_tokens``); defaults to ``cache_write``.
    """

    input: float = _price_field(optional=False)
    output: float = _price_field(optional=False)
    cached_input: float = _price_field(optional=True)
    reasoning: float = _price_field(optional=True)
    audio_input: Optional[float] = _price_field(optional=True)
    audio_output: Optional[float] = _price_field(optional=True)
    cache_write: float = _price_field(optional=True)
    cache_write_1h: float = _price_field(optional=True)

    def __attrs_post_init__(self) -> None:
        # Resolve the defaults once, so that equality and repr show the prices
        # actually charged. Frozen classes need object.__setattr__ for this.
        if self.cached_input is None:
            object.__setattr__(self, "cached_input", self.input)
        if self.reasoning is None:
            object.__setattr__(self, "reasoning", self.output)
        if self.cache_write is None:
            object.__setattr__(self, "cache_write", self.input)
        if self.cache_write_1h is None:
            object.__setattr__(self, "cache_write_1h", self.cache_write)

    @classmethod
    def coerce(cls, value: "ModelPrice | Mapping[str, Any] | Tuple[Any, ...]") -> "ModelPrice":
        """Build a price from a ModelPrice, a dict or a tuple.

        Args:
            value: a :class:`ModelPrice` (returned as is); a dict with the keys
                ``input``, ``output`` and optionally ``cached_input``,
                ``reasoning``, ``audio_input``, ``audio_output``,
                ``cache_write``, ``cache_write_1h``; or a tuple
                ``(input, cached_input, output)`` (``cached_input`` may be
                ``None``) or ``(input, output)``.

        Raises:
            ConfigurationError: the value has another shape or a bad price.
        """
        if isinstance(value, ModelPrice):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - set(_PRICE_FIELDS)
            if unknown:
                raise ConfigurationError(f"unknown ModelPrice keys {sorted(map(str, unknown))}, use {_PRICE_FIELDS}")
            missing = {"input", "output"} - set(value)
            if missing:
                raise ConfigurationError(f"a model price needs 'input' and 'output' (missing {sorted(missing)})")
            return cls(**{str(k): v for k, v in value.items()})
        if isinstance(value, tuple):
            if len(value) == 3:
                return cls(input=value[0], cached_input=value[1], output=value[2])
            if len(value) == 2:
                return cls(input=value[0], output=value[1])
        raise ConfigurationError(
            "a model price must be a ModelPrice, a dict or a tuple (input, cached_input, output), " f"got {value!r}"
        )


BUILTIN_PRICES: Dict[str, ModelPrice] = {name: ModelPrice(**spec) for name, spec in TABLE.items()}
"""The built-in table (see :data:`PRICES_AS_OF`); treat it as read-only."""

# Dated snapshot suffixes: -2024-08-06, -20241022, -0613 / -0125 (MMDD).
_DATE_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
# A number after a known name makes another version of the model, whose price
# may differ: claude-opus-4-9 is not claude-opus-4, nor claude-sonnet-5-5 claude-sonnet-5.
_VERSION_NEXT = re.compile(r"\d+(?:-|$)")


def _base_name(name: str) -> str:
    """Lowercase, trimmed, provider prefix (``openai/``, ``azure/openai/``) removed."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    # Azure spells GPT-3.5 model names "gpt-35-turbo".
    return "gpt-3.5" + base[6:] if base.startswith("gpt-35") else base


def _candidates(name: str) -> List[str]:
    """The cleaned name, then the same without one, two... date suffixes."""
    names = [_base_name(name)]
    while (shorter := _DATE_SUFFIX.sub("", names[-1])) not in ("", names[-1]):
        names.append(shorter)
    return names


def _resolve(name: str, known: Mapping[str, Any]) -> Optional[str]:
    """The known name that ``name`` denotes, or ``None``.

    Order: exact match, then after each stripped date suffix, then the longest
    known prefix that ends on a ``-`` boundary and is not followed by a
    version number. Exact-first and longest-first keep ``gpt-4o-mini-x`` on
    ``gpt-4o-mini`` rather than ``gpt-4o``; the boundary keeps ``gpt-4.1``
    off ``gpt-4`` and ``o3x`` off ``o3``; the version rule keeps an unknown
    ``claude-opus-4-9`` off ``claude-opus-4`` (Anthropic numbers versions
    with dashes, and prices change between them).
    """
    names = _candidates(name)
    for candidate in names:
        if candidate in known:
            return candidate
    base = names[-1]
    family = (key for key in known if base.startswith(key + "-") and not _VERSION_NEXT.match(base, len(key) + 1))
    return max(family, key=len, default=None)


def normalize_model(name: str) -> str:
    """The canonical built-in name for a model name.

    ``openai/gpt-4o-2024-08-06`` gives ``gpt-4o``, ``gpt-3.5-turbo-0125``
    gives ``gpt-3.5-turbo`` and ``gpt-4o-mini-2024-07-18`` gives
    ``gpt-4o-mini`` (never ``gpt-4o``); ``anthropic/claude-sonnet-4-5-20250929``
    gives ``claude-sonnet-4-5`` and ``claude-3-7-sonnet-latest``
    ``claude-3-7-sonnet``. A name that matches no built-in entry is returned
    lowercased, without provider prefix and date suffix.

    Args:
        name: a model name as sent to or reported by a server.

    Returns:
        The matched :data:`BUILTIN_PRICES` key, or the cleaned name.
    """
    return _resolve(name, BUILTIN_PRICES) or _candidates(name)[-1]


# One warning per unknown model name per process, whichever table sees it.
_warned_models: Set[str] = set()
_MAX_WARNED = 1000
_warned_lock = threading.Lock()


def _warn_unknown(model: str, why: str = "") -> None:
    with _warned_lock:
        if model in _warned_models or len(_warned_models) >= _MAX_WARNED:
            return  # the bound: a server inventing a model name per reply must not grow this forever
        _warned_models.add(model)
    # One short line: it may land in a chat screen or a web server's log. The name is the
    # server's choice: truncated, its control characters escaped.
    name = log_text(model, 100)
    logger.warning(
        "no price known for model '%s'%s and the server reported no cost: cost shown as n/a "
        "(set one with Client(pricing={'%s': {...}}))", name, why, name
    )  # fmt: skip


def _usage_cost(usage: "Usage", price: ModelPrice) -> float:
    """USD cost of ``usage`` at ``price`` (prompt includes cache reads and writes, completion includes reasoning)."""
    prompt = max(usage.prompt_tokens, 0)
    completion = max(usage.completion_tokens, 0)
    # Audio is split out of the text totals only when it has its own price.
    audio_in = min(max(usage.audio_prompt_tokens, 0), prompt) if price.audio_input is not None else 0
    audio_out = min(max(usage.audio_completion_tokens, 0), completion) if price.audio_output is not None else 0
    text_in = prompt - audio_in
    # Clamped because some servers report details that exceed the totals;
    # a negative token count must never lower a cost.
    cached = min(max(usage.cached_tokens, 0), text_in)
    written = min(max(usage.cache_write_tokens, 0), text_in - cached)
    written_1h = min(max(usage.cache_write_1h_tokens, 0), written)
    text_out = completion - audio_out
    reasoning = min(max(usage.reasoning_tokens, 0), text_out)
    parts = [(text_in - cached - written) * price.input, cached * price.cached_input]
    parts += [(written - written_1h) * price.cache_write, written_1h * price.cache_write_1h]
    parts += [(text_out - reasoning) * price.output, reasoning * price.reasoning]
    parts += [audio_in * (price.audio_input or 0.0), audio_out * (price.audio_output or 0.0)]
    # fsum keeps the sum correctly rounded: within an ulp of the exact formula.
    return math.fsum(parts) / 1_000_000


PriceLike = Union[ModelPrice, Mapping[str, Any], Tuple[Any, ...]]


class PriceTable:
    """Maps model names to prices and computes the cost of a turn.

    Thread-safe: lookups may run while another thread registers a price.

    Args:
        overrides: model name to price (a :class:`ModelPrice`, a dict or a
            tuple, see :meth:`ModelPrice.coerce`). These win over built-ins.
        builtin: whether to include :data:`BUILTIN_PRICES`.
    """

    def __init__(self, overrides: Optional[Mapping[str, PriceLike]] = None, *, builtin: bool = True) -> None:
        self._lock = threading.Lock()
        self._builtin = builtin
        self._user: Dict[str, ModelPrice] = {}
        self._cache: Dict[str, Optional[str]] = {}
        self._merged: Dict[str, ModelPrice] = dict(BUILTIN_PRICES) if builtin else {}
        if overrides is not None:
            if not isinstance(overrides, Mapping):
                raise ConfigurationError(f"price overrides must be a mapping of model name to price, got {overrides!r}")
            for model, price in overrides.items():
                self.register(model, price)

    def register(self, model: str, price: PriceLike) -> None:
        """Set the price of a model (replacing any earlier or built-in one).

        The name is lowercased and stripped of a provider prefix, and looked
        up like built-in names: ``register("my-model", ...)`` also prices
        ``vendor/my-model-2025-01-01``.

        Raises:
            ConfigurationError: empty name or bad price.
        """
        if not isinstance(model, str) or not _base_name(model):
            raise ConfigurationError(f"a model name must be a non-empty string, got {model!r}")
        coerced = ModelPrice.coerce(price)
        key = _base_name(model)
        with self._lock:
            self._user[key] = coerced
            # Copy-on-write: readers never see a dict that is being changed.
            merged = dict(self._merged)
            merged[key] = coerced
            self._merged = merged
            self._cache = {}

    def lookup(self, model: str) -> Optional[ModelPrice]:
        """The price of ``model``, or ``None`` when it is unknown.

        Resolution runs over user and built-in names together (exact, then
        without date suffixes, then longest ``-``-bounded prefix), so a user
        price for ``gpt-4o`` never captures ``gpt-4o-mini``.
        """
        if not isinstance(model, str) or not model.strip():
            return None
        merged, cache = self._merged, self._cache
        if model in cache:
            key = cache[model]
        else:
            key = _resolve(model, merged)
            with self._lock:
                # Bounded, because model names can come from servers.
                if self._merged is merged and len(self._cache) < 4096:
                    self._cache[model] = key
        return merged.get(key) if key is not None else None

    def cost(self, usage: "Usage", model: str, *, warn: bool = True) -> Tuple[float, bool]:
        """The USD cost of ``usage`` for ``model``.

        Cost = uncached prompt × input + cached × cached_input
        + cache writes × cache_write (1-hour writes × cache_write_1h)
        + (completion − reasoning) × output + reasoning × reasoning, per 1M
        tokens, where the uncached prompt is the prompt less its cache reads
        and writes; audio tokens go at the audio prices when the model has them.

        Args:
            usage: the tokens.
            model: the model name.
            warn: log the unknown-model warning (off for running estimates,
                which the server's reported cost may still replace).

        Returns:
            ``(cost, known)``; an unknown model gives ``(0.0, False)`` and one
            logged warning per model name per process.
        """
        price = self.lookup(model)
        if price is None:
            if warn:
                _warn_unknown(str(model))
            return 0.0, False
        return _usage_cost(usage, price), True

    @classmethod
    def from_spec(cls, spec: "None | Mapping[str, PriceLike] | PriceTable | str") -> "PriceTable":
        """Build a table from a user option.

        Args:
            spec: ``None`` (built-in prices), a mapping of overrides (on top
                of the built-ins), a PriceTable (returned as is), or
                ``"genai-prices"`` (prices from the optional ``genai-prices``
                package, see :class:`GenAIPricesTable`).

        Raises:
            ConfigurationError: any other value, or ``"genai-prices"``
                without that package installed.
        """
        if spec is None:
            return cls()
        if isinstance(spec, PriceTable):
            return spec
        if isinstance(spec, Mapping):
            return cls(spec)
        if isinstance(spec, str) and spec.strip().lower().replace("_", "-") == "genai-prices":
            return GenAIPricesTable()
        raise ConfigurationError(
            f"prices must be None, a mapping of model name to price, a PriceTable or 'genai-prices', got {spec!r}"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(overrides={len(self._user)}, builtin={self._builtin})"


class GenAIPricesTable(PriceTable):
    """Prices from the optional ``genai-prices`` package (``pip install genai-prices``).

    It covers many providers and keeps price history; its cost is computed by
    ``genai_prices.calc_price``. Prices registered here still win;
    :meth:`lookup` sees only those.

    Args:
        overrides: prices that win over genai-prices, as for :class:`PriceTable`.
        provider_id: a genai-prices provider id (``"openai"``, ``"groq"``...)
            used for names without a prefix; ``None`` lets genai-prices guess.

    Raises:
        ConfigurationError: genai-prices is not installed.
    """

    def __init__(
        self, overrides: Optional[Mapping[str, PriceLike]] = None, *, provider_id: Optional[str] = None
    ) -> None:
        try:
            import genai_prices  # noqa: F401  (optional dependency, imported only when asked for)
        except ImportError as exc:
            raise ConfigurationError(
                "prices='genai-prices' needs the optional genai-prices package: pip install genai-prices"
            ) from exc
        super().__init__(overrides, builtin=False)
        self._provider_id = provider_id

    def _calc(self, usage: "Usage", model: str) -> Optional[float]:
        import genai_prices

        name = model.strip()
        # "vendor/model": try the vendor as the genai-prices provider, then let it guess.
        attempts = [(name.rsplit("/", 1)[-1], self._provider_id)]
        if "/" in name:
            attempts.insert(0, (attempts[0][0], name.split("/", 1)[0].lower()))
        prompt, completion = max(usage.prompt_tokens, 0), max(usage.completion_tokens, 0)
        # genai-prices rejects parts larger than their totals; clamp as _usage_cost does.
        # Its cache_write_tokens include the 1-hour writes, as promptkit's do.
        read = min(max(usage.cached_tokens, 0), prompt)
        written = min(max(usage.cache_write_tokens, 0), prompt - read)
        gusage = genai_prices.Usage(
            input_tokens=prompt,
            cache_read_tokens=read,
            cache_write_tokens=written,
            cache_write_1h_tokens=min(max(usage.cache_write_1h_tokens, 0), written),
            output_tokens=completion,
            input_audio_tokens=min(max(usage.audio_prompt_tokens, 0), prompt),
            output_audio_tokens=min(max(usage.audio_completion_tokens, 0), completion),
        )
        for ref, provider in attempts:
            try:
                result = genai_prices.calc_price(gusage, model_ref=ref, provider_id=provider)
            except (LookupError, ValueError):
                continue
            return float(result.total_price)
        return None

    def cost(self, usage: "Usage", model: str, *, warn: bool = True) -> Tuple[float, bool]:
        """As :meth:`PriceTable.cost`, falling back to genai-prices for unregistered models."""
        price = self.lookup(model)
        if price is not None:
            return _usage_cost(usage, price), True
        found = self._calc(usage, str(model)) if isinstance(model, str) and model.strip() else None
        if found is None:
            if warn:
                _warn_unknown(str(model), " (not in genai-prices either)")
            return 0.0, False
        return found, True
