"""Bounded loopback load on a served champion (`vistune serve`): requests/s, p50/p99, errors.

    vistune serve --port 5001 &            # or `mlflow models serve -m models:/vistune-classifier@champion`
    python benchmarks/serve_load.py --seconds 60 --concurrency 4

Threads with keep-alive-free urllib requests, one PNG per request (a test image from
data/raw unless --image is given). Prints a table and writes JSON (--out).
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _body(image: Path) -> bytes:
    b64 = base64.b64encode(image.read_bytes()).decode("ascii")
    return json.dumps({"dataframe_split": {"columns": ["image_b64"], "data": [[b64]]}}).encode()


def _default_image() -> Path:
    found = sorted((ROOT / "data" / "raw").rglob("*.png"))
    if not found:
        raise SystemExit("no image under data/raw; pass --image PATH")
    return found[0]


def run(url: str, body: bytes, seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < stop:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                ok, kind = True, ""
            except urllib.error.HTTPError as exc:
                ok, kind = False, f"HTTP {exc.code}"
            except OSError as exc:
                ok, kind = False, type(exc).__name__
            dt = time.perf_counter() - t0
            with lock:
                if ok:
                    latencies.append(dt)
                else:
                    errors[kind] = errors.get(kind, 0) + 1

    t_start = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t_start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")

    return {"url": url, "seconds": round(wall, 2), "concurrency": concurrency, "requests": len(lat),
            "errors": sum(errors.values()), "error_kinds": errors, "requests_per_s": round(len(lat) / wall, 2),
            "p50_ms": round(pct(50), 2), "p99_ms": round(pct(99), 2),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
            "payload_bytes": None, "cpu": platform.processor() or platform.machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:5001/invocations")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_load.json")
    args = ap.parse_args()
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        raise SystemExit("serve_load only targets loopback (127.0.0.1 / localhost)")
    body = _body(args.image or _default_image())
    result = run(args.url, body, args.seconds, args.concurrency)
    result["payload_bytes"] = len(body)
    print(f"{result['requests']} requests in {result['seconds']} s at concurrency {result['concurrency']}: "
          f"{result['requests_per_s']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
          f"{result['errors']} errors {result['error_kinds'] or ''}")
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
