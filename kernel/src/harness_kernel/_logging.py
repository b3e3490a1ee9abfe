"""The per-store structlog pipeline: level, timestamp, redaction, then every sink.

No global structlog configuration is touched: each store builds its own logger, so two
stores in one process log to their own sinks. Redaction runs before any sink sees a
record: sensitive keys are masked wherever they nest, and every string (exception text
included) goes through ``_secrets.SecretValues.mask``: URL passwords and other
credentials by their shape, and the configured secret values (API keys from provider
options, values the host lists) whatever their length.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any

import structlog

from ._secrets import MASK, SecretValues, sensitive_names
from .contracts import LOG_LEVELS, LogSink

__all__ = ["LEVELS", "Redactor", "SinkFanout", "build_logger", "parse_level", "shape"]

LEVELS = LOG_LEVELS


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r} (use debug, info, warning, error, critical)"
        ) from None


def shape(value: Any) -> Any:
    """The shape of a value without its content: ``{"q": "str[12]"}``."""
    if isinstance(value, Mapping):
        return {str(k): shape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shape(v) for v in value[:20]]
    if isinstance(value, str):
        return f"str[{len(value)}]"
    return type(value).__name__


class Redactor:
    """A structlog processor masking sensitive keys, credentials and known secret values.

    ``keys`` (a host's ``redact_keys``) widen the sensitive names, both for record keys
    and for ``name=value`` pairs inside strings.
    """

    def __init__(self, values: Iterable[str] = (), keys: Iterable[str] = ()) -> None:
        self._keys = sensitive_names(keys)
        self._secrets = SecretValues(values, names=self._keys)

    def add_values(self, values: Iterable[str]) -> None:
        self._secrets = SecretValues([*self._secrets.values, *values], names=self._keys)

    def scrub(self, text: str) -> str:
        """``text`` as users may see it: credentials and every known secret value masked
        (the run loop masks the errors it reports with this too)."""
        return self._secrets.mask(text)

    def _clean(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if depth > 8:
            return value
        if isinstance(value, Mapping):
            return {
                k: (
                    MASK
                    if isinstance(k, str) and self._keys.search(k)
                    else self._clean(v, depth + 1)
                )
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._clean(v, depth + 1) for v in value]
        if isinstance(value, BaseException):
            return self._clean(f"{type(value).__name__}: {value}", depth + 1)
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self._clean(repr(value), depth + 1)

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {
            k: (MASK if self._keys.search(k) and k != "event" else self._clean(v))
            for k, v in event_dict.items()
        }


class SinkFanout:
    """The last processor: hands the record to each sink whose level admits it.

    A sink that raises is dropped from the fan-out (and reported on stderr's logging),
    so one broken sink cannot break logging for the others or the run.
    """

    def __init__(self, sinks: Sequence[LogSink]) -> None:
        self.sinks = list(sinks)

    def __call__(self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
        level = LEVELS.get(method, logging.INFO)
        for sink in list(self.sinks):
            if level >= sink.level:
                try:
                    sink.write(event_dict)
                except Exception as exc:
                    self.sinks.remove(sink)
                    logging.getLogger("harness_kernel").error(
                        "log sink %r failed and was removed: %s", sink, exc
                    )
        raise structlog.DropEvent


class _Null:
    def msg(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - never reached
        return None

    debug = info = warning = error = critical = exception = msg


def build_logger(sinks: Sequence[LogSink], redactor: Redactor, **context: Any) -> Any:
    """A bound structlog logger for one store; records below every sink's level cost nothing."""
    # structlog's filtering loggers exist for the standard levels only: round down.
    wanted = min((s.level for s in sinks), default=logging.CRITICAL)
    min_level = max((lvl for lvl in (0, 10, 20, 30, 40, 50) if lvl <= wanted), default=0)
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redactor,
        SinkFanout(sinks),
    ]
    return structlog.wrap_logger(
        _Null(),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        context_class=dict,
        cache_logger_on_first_use=False,
        **context,
    )
