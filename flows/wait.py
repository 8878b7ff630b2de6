"""`python -m flows.wait URL [SECONDS]`: block until URL answers (used by `make up`)."""

from __future__ import annotations

import sys
import time
import urllib.request


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout:.0f}s waiting for {url}") from None
            time.sleep(1)


if __name__ == "__main__":
    wait_http(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 120.0)
