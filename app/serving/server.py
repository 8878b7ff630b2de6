"""`vistune serve`: MLflow's scoring protocol on 127.0.0.1, answered by whatever version the alias
points at now (`app.serving.watcher`), each prediction row naming its `model_version`.

Starlette on uvicorn, the pair `mlflow models serve` itself runs (already installed, maintained,
async so `/ping` answers while a prediction runs in a worker thread). The request is parsed by
MLflow's own `scoring_server.invocations`, so the request format and its error codes are exactly
those of `mlflow models serve` (docs/serving.md), except that an empty or non-JSON body is answered
here, in one line (`body_problem`): MLflow's message for it echoes the whole body. Every error answer
is one JSON line `{"error_code", "message"}`: no stack trace, no server path.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pandas as pd

from app.serving.watcher import AliasWatcher, Served

_log = logging.getLogger("vistune.serve")
MAX_MESSAGE = 500
EXAMPLE = '{"dataframe_split": {"columns": ["image_b64"], "data": [["<base64 of a PNG/JPEG file>"]]}}'


class _Versioned:
    """The served pyfunc as `scoring_server.invocations` sees it, adding `model_version` to each row."""

    def __init__(self, served: Served) -> None:
        self.served, self.metadata = served, served.model.metadata

    def predict(self, data, params=None):
        out = self.served.model.predict(data, params=params)
        if isinstance(out, pd.DataFrame):
            out = out.assign(model_version=self.served.version)
        return out


def _one_line(message: str) -> str:
    """MLflow prefixes "Failed to predict data '<the request>'" to a model error: keep the reason only."""
    if message.startswith("Failed to predict data") and "Error: " in message:
        message = message.split("Error: ", 1)[1]
    return " ".join(message.split())[:MAX_MESSAGE]


def body_problem(body: bytes) -> str | None:
    """One line saying why a JSON request's body cannot be read (nothing of the body echoed), or None."""
    if not body.strip():
        return f"empty request body; send JSON such as {EXAMPLE}"
    try:
        json.loads(body)
    except UnicodeDecodeError:
        return f"the request body is not UTF-8 text; send JSON such as {EXAMPLE}"
    except json.JSONDecodeError as exc:
        return (
            f"the request body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"send JSON such as {EXAMPLE}"
        )
    return None


def error(status: int, code: str, message: str):
    from starlette.responses import Response

    return Response(
        json.dumps({"error_code": code, "message": _one_line(message)}),
        status_code=status,
        media_type="application/json",
    )


def create_app(watcher: AliasWatcher):
    """The ASGI app: /ping and /health (200 once a model is loaded), /version, /invocations."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def ping(request):
        return Response("\n", status_code=200 if watcher.current is not None else 503, media_type="application/json")

    async def version(request):
        served = watcher.current
        return JSONResponse(
            {
                "model": watcher.name,
                "alias": watcher.alias,
                "version": served.version if served else None,
                "loaded_at": served.loaded_at if served else None,
                "last_error": watcher.last_error,
            }
        )

    async def invocations(request):
        served = watcher.current  # taken once: a swap during this request does not change its model
        if served is None:
            return error(503, "TEMPORARILY_UNAVAILABLE", "no model loaded yet; retry when GET /ping answers 200")
        data = await request.body()
        content_type = request.headers.get("content-type") or ""
        if content_type.split(";")[0].strip() in ("application/json", "") and (problem := body_problem(data)):
            return error(400, "BAD_REQUEST", problem)
        try:
            result = await asyncio.to_thread(
                scoring_server.invocations, data, content_type, _Versioned(served), served.input_schema
            )
        except MlflowException as exc:
            return error(exc.get_http_status_code(), exc.error_code, exc.message)
        except Exception:  # noqa: BLE001 - the traceback goes to the log, the client gets one line
            _log.exception("request failed on %s v%s", served.name, served.version)
            return error(500, "INTERNAL_ERROR", "the server failed on this request (logged by the server); retry")
        if result.status != 200:
            return error(result.status, "BAD_REQUEST", result.response)
        return Response(result.response, status_code=200, media_type=result.mimetype)

    routes = [
        Route("/ping", ping),
        Route("/health", ping),
        Route("/version", version),
        Route("/invocations", invocations, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def run(watcher: AliasWatcher, host: str = "127.0.0.1", port: int = 5001) -> int:
    """Load the current version (a failure here exits: there is nothing to serve), then serve and poll."""
    import uvicorn

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if watcher.poll_once() not in ("swapped", "same") or watcher.current is None:
        raise ValueError(f"nothing to serve: {watcher.last_error}")
    watcher.start()
    try:
        uvicorn.Server(
            uvicorn.Config(create_app(watcher), host=host, port=port, log_level="warning", access_log=False)
        ).run()
    finally:
        watcher.stop()
    return 0
