"""Retries with exponential backoff for calls to servers that may be briefly away.

One small helper instead of a library: the register stage needs exactly "try, wait
backoff * 2**i, try again, then give up with the last error", with a predicate so that
only transient failures (connection refused, timeouts, 5xx) are retried and a real
mistake (unknown model, bad request) fails at once.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

MAX_DELAY_S = 60.0


def delays(retries: int, backoff_s: float, max_delay_s: float = MAX_DELAY_S) -> list[float]:
    """The waits between attempts: backoff_s, 2*backoff_s, 4*backoff_s, ... capped at max_delay_s."""
    return [min(backoff_s * 2**i, max_delay_s) for i in range(max(retries, 0))]


def call(
    fn: Callable[[], T],
    *,
    retries: int,
    backoff_s: float,
    what: str,
    retry_if: Callable[[BaseException], bool] = lambda exc: True,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`fn()`, retried up to `retries` more times while `retry_if(error)`; the last error propagates."""
    waits = delays(retries, backoff_s)
    for attempt in range(len(waits) + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == len(waits) or not retry_if(exc):
                raise
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            log(f"{what} failed ({first_line}); retry {attempt + 1}/{len(waits)} in {waits[attempt]:.1f}s")
            sleep(waits[attempt])
    raise AssertionError("unreachable")
