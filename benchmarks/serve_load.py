"""Bounded loopback load on a served champion (`vistune serve`): requests/s, p50/p99, errors.

    vistune serve --port 5001 &            # or `mlflow models serve -m models:/vistune-classifier@champion`
    python benchmarks/serve_load.py --seconds 60 --concurrency 4

Threads with keep-alive-free urllib requests, one PNG per request (a test image from
data/raw unless --image is given). Prints a table and writes JSON (--out).

`--swap MODEL_FILE` measures serving that follows the alias: it registers MODEL_FILE as v1 and a copy
with a shifted head as v2 in a fresh sqlite store (under --workdir), starts `vistune serve` on it,
and under steady load promotes v2, then rolls back to v1: failed requests, p50/p99 before / during /
after each swap, and seconds from the alias change to the first answer by the new version.

    python benchmarks/serve_load.py --swap data/model/model.pt --seconds 20 --concurrency 2
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import statistics
import sys
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


class Load:
    """Steady load from `concurrency` threads; each answer is kept as (end time, latency, ok, what)
    where `what` is the answering `model_version` (or the error kind)."""

    def __init__(self, url: str, body: bytes, concurrency: int) -> None:
        self.url, self.body, self.samples = url, body, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(concurrency)]

    def _one(self) -> tuple[bool, str]:
        req = urllib.request.Request(self.url, data=self.body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                answer = json.loads(r.read())
            return True, str(answer["predictions"][0].get("model_version", ""))
        except urllib.error.HTTPError as exc:
            return False, f"HTTP {exc.code}"
        except (OSError, ValueError, KeyError) as exc:
            return False, type(exc).__name__

    def _worker(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            ok, what = self._one()
            self.samples.append((time.monotonic(), time.perf_counter() - t0, ok, what))  # list.append is atomic

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()


def summarize(samples: list, wall: float) -> dict:
    lat = sorted(dt for _, dt, ok, _ in samples if ok)
    errors: dict[str, int] = {}
    for _, _, ok, what in samples:
        if not ok:
            errors[what] = errors.get(what, 0) + 1

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000, 2) if lat else float("nan")

    return {
        "seconds": round(wall, 2),
        "requests": len(lat),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "requests_per_s": round(len(lat) / wall, 2) if wall else None,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
    }


def run(url: str, body: bytes, seconds: float, concurrency: int) -> dict:
    load = Load(url, body, concurrency)
    t_start = time.monotonic()
    load.start()
    time.sleep(seconds)
    load.stop()
    out = {"url": url, "concurrency": concurrency, **summarize(load.samples, time.monotonic() - t_start)}
    return {**out, "payload_bytes": None, "cpu": platform.processor() or platform.machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:5001/invocations")
    ap.add_argument("--seconds", type=float, default=60.0, help="with --swap: each phase's length")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--image", type=Path, default=None)
    ap.add_argument(
        "--swap",
        type=Path,
        default=None,
        metavar="MODEL_FILE",
        help="measure promote + rollback under load on a fresh store made from this model file",
    )
    ap.add_argument(
        "--workdir", type=Path, default=None, help="with --swap: where the store goes (default: a temp dir)"
    )
    ap.add_argument("--poll-s", type=float, default=5.0, help="with --swap: the server's alias poll interval")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    image = args.image or _default_image()
    if args.swap is not None:
        sys.path.insert(0, str(ROOT))
        from benchmarks.serve_swap import swap_benchmark

        result = swap_benchmark(
            args.swap, image, _body(image), args.seconds, args.concurrency, args.poll_s, args.workdir
        )
        out = args.out or ROOT / "benchmarks" / "results" / "serve_swap.json"
    else:
        if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
            raise SystemExit("serve_load only targets loopback (127.0.0.1 / localhost)")
        body = _body(image)
        result = run(args.url, body, args.seconds, args.concurrency)
        result["payload_bytes"] = len(body)
        print(
            f"{result['requests']} requests in {result['seconds']} s at concurrency {result['concurrency']}: "
            f"{result['requests_per_s']} req/s, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
            f"{result['errors']} errors {result['error_kinds'] or ''}"
        )
        out = args.out or ROOT / "benchmarks" / "results" / "serve_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
