"""`vistune serve` for real: MLflow's scoring app (as `mlflow models serve` runs it) on 127.0.0.1, over HTTP."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from integrations import tracking
from vistune.models.classifier import Classifier

from tests.conftest import REPO, free_port, stop_process_group, tiny_register_cfg
from tests.integrations.registry_helpers import register, write_params_file

BAD_REQUEST = 400  # one status for every malformed request: MLflow's BAD_REQUEST / INVALID_PARAMETER_VALUE


def start_serve(params: Path, root: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`vistune serve` on a free port in its own process group, the store from the params file; (process, URL)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)  # the store comes from the params file
    cmd = [sys.executable, "-m", "app.cli", "--params", str(params), "--root", str(root), "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _wait_ping(url: str, proc: subprocess.Popen, limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/ping", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    raise AssertionError("server did not answer /ping in time")


def _served_frame(predictions: list[dict], classes: list[str]) -> tuple[list[str], np.ndarray]:
    return [p["label"] for p in predictions], np.array([[p[f"p_{c}"] for c in classes] for p in predictions])


def _own_predictions(lay, blobs: list[bytes]) -> tuple[list[str], np.ndarray]:
    """What the model file itself answers on these bytes (vistune's Classifier, evaluate's temperature)."""
    temperature = json.loads(lay.calibration.read_text())["temperature"]
    return Classifier.load(lay.model, temperature=temperature).predict_bytes(blobs)


def test_serve_answers_a_png_over_http(trained_tiny, probed_tiny, mlflow_cfg, tmp_path):
    receipt = register(trained_tiny, tmp_path / "lay", mlflow_cfg)
    assert receipt["promoted"]
    params = write_params_file(tmp_path / "params.yaml", mlflow_cfg)
    manifest = pd.read_csv(trained_tiny.manifest, dtype={"label": str})
    row = manifest[manifest.split == "test"].iloc[0]
    png = (trained_tiny.raw / row.path).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    proc, url = start_serve(params, tmp_path)
    try:
        _wait_ping(url, proc)
        body = {"dataframe_split": {"columns": ["image_b64"], "data": [[base64.b64encode(png).decode("ascii")]]}}
        req = urllib.request.Request(
            url + "/invocations", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as r:
            answer = json.loads(r.read())
        pred = answer["predictions"][0]
        classes = json.loads((trained_tiny.prepared / "meta.json").read_text())["classes"]
        probs = [pred[f"p_{c}"] for c in classes]
        assert pred["label"] in classes
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert pred["confidence"] == pytest.approx(max(probs))
        assert pred["label"] == classes[probs.index(max(probs))]
        # every test image in one request: the HTTP answers are the model's own predictions on those bytes
        blobs = [(trained_tiny.raw / p).read_bytes() for p in manifest[manifest.split == "test"].path]
        body = {
            "dataframe_split": {
                "columns": ["image_b64"],
                "data": [[base64.b64encode(b).decode("ascii")] for b in blobs],
            }
        }
        code, text = _post(url, json.dumps(body).encode())
        assert code == 200, text[:300]
        served_labels, served_probs = _served_frame(json.loads(text)["predictions"], classes)
        own_labels, own_probs = _own_predictions(trained_tiny, blobs)
        assert served_labels == own_labels
        np.testing.assert_allclose(served_probs, own_probs, rtol=1e-5, atol=1e-7)
        # a malformed request is refused with the model's own message, and the server stays up
        bad = {"dataframe_split": {"columns": ["image_b64"], "data": [["%% not base64 %%"]]}}
        req = urllib.request.Request(
            url + "/invocations", data=json.dumps(bad).encode(), headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=60)
        code, answer = err.value.code, json.loads(err.value.read().decode())
        assert (code, answer["error_code"]) == (BAD_REQUEST, "INVALID_PARAMETER_VALUE")
        assert answer["message"].startswith("row 0: image_b64 is not valid base64; ")  # vistune's own line, whole
        assert "stack_trace" not in answer  # the client gets the reason, not the server's traceback
        banner = proc.stdout.readline()  # the startup line: what is served and where `path` inputs may point
        assert banner.startswith(
            f"serving vistune-classifier v{receipt['version']} (alias champion) on "
            f"{url}/invocations; image root for `path` inputs: {REPO}"
        )
    finally:
        stop_process_group(proc)

    # v2 (other weights, truly better) passes the real gate; `vistune rollback`; the reloaded @champion is v1 again
    v2 = register(probed_tiny, tmp_path / "lay2", mlflow_cfg)
    assert v2["promoted"] and v2["champion_before"] == receipt["version"], v2["reason"]
    v2_labels, _ = _own_predictions(probed_tiny, blobs)
    assert v2_labels != own_labels  # the two versions answer differently, so the check below means something
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "--params", str(params), "--root", str(tmp_path), "rollback"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"rolled back v{v2['version']} -> v{receipt['version']}" in out.stdout
    tracking.setup(mlflow_cfg, tmp_path)
    champion = mlflow.pyfunc.load_model("models:/vistune-classifier@champion")
    answer = champion.predict(pd.DataFrame({"image": blobs}))
    labels, probs = _served_frame(answer.to_dict("records"), classes)
    assert labels == own_labels
    np.testing.assert_allclose(probs, own_probs, rtol=1e-5, atol=1e-7)


def _post(url: str, data: bytes, content_type: str = "application/json") -> tuple[int, str]:
    req = urllib.request.Request(url + "/invocations", data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _split(column: str, value) -> bytes:
    return json.dumps({"dataframe_split": {"columns": [column], "data": [[value]]}}).encode()


@dataclasses.dataclass(frozen=True)
class Served:
    root: Path  # the store's folder (params.yaml, mlflow.db, artifacts)
    cfg: object  # its RegisterCfg
    receipt: dict  # what register answered
    proc: subprocess.Popen
    url: str


@pytest.fixture(scope="module")
def guarded_server(trained_tiny, tmp_path_factory):
    """The tiny model registered once (real register stage) and one real `vistune serve --max-pixels 1000000`
    on it, for the malformed-request and the guard tests: both only send requests, and each ends by checking
    the server still answers. Its output is read as it comes (a full pipe would stall the server)."""
    root = tmp_path_factory.mktemp("served")
    cfg = tiny_register_cfg(root)
    receipt = register(trained_tiny, root / "lay", cfg)
    params = write_params_file(root / "params.yaml", cfg)
    proc, url = start_serve(params, root, "--max-pixels", "1000000")
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    try:
        _wait_ping(url, proc)
        yield Served(root, cfg, receipt, proc, url)
    finally:
        stop_process_group(proc)


@pytest.mark.slow
def test_malformed_requests_get_4xx_and_the_server_keeps_answering(trained_tiny, guarded_server):
    manifest = pd.read_csv(trained_tiny.manifest, dtype={"label": str})
    png = (trained_tiny.raw / manifest[manifest.split == "test"].iloc[0].path).read_bytes()
    proc, url, tmp_path = guarded_server.proc, guarded_server.url, guarded_server.root
    b64 = base64.b64encode
    good = b64(png).decode()

    def rows(*values: str) -> bytes:
        return json.dumps({"dataframe_split": {"columns": ["image_b64"], "data": [[v] for v in values]}}).encode()

    bad = {  # what -> (body, error_code, the start of the message: vistune's own line, nothing prepended)
        "non-image bytes": (
            _split("image_b64", b64(b"GIF89a but not really an image" * 10).decode()),
            "INVALID_PARAMETER_VALUE",
            "row 0: not a usable image: ",
        ),
        "bad base64": (
            _split("image_b64", "%% not base64 %%"),
            "INVALID_PARAMETER_VALUE",
            "row 0: image_b64 is not valid base64; send",
        ),
        "wrong column": (
            _split("pixels", "abc"),
            "INVALID_PARAMETER_VALUE",  # the signature drops unknown columns
            "input needs one of the columns ['image_b64', 'image', 'path']; the request had none",
        ),
        "path escape": (
            _split("path", "../../../../etc/passwd"),
            "INVALID_PARAMETER_VALUE",
            "row 0: path '../../../../etc/passwd' is outside the server's image root; ",
        ),
        "missing path": (
            _split("path", "no/such.png"),
            "INVALID_PARAMETER_VALUE",
            "row 0: cannot read path 'no/such.png' (No such file or directory)",
        ),
        "empty frame": (rows(), "INVALID_PARAMETER_VALUE", "the request has no rows; send one row per image"),
        "bad row among good ones": (
            rows(good, good, b64(png[:40]).decode()),
            "INVALID_PARAMETER_VALUE",
            "row 2: not a usable image: ",
        ),
        "wrong JSON shape": (
            json.dumps({"predict": [1, 2, 3]}).encode(),
            "BAD_REQUEST",
            "The input must be a JSON dictionary with exactly one of the input fields",
        ),
        "not JSON": (
            b"{this is not json",
            "BAD_REQUEST",
            "the request body is not JSON (Expecting property name "
            "enclosed in double quotes at line 1 column 2); send JSON such as",
        ),
        "huge non-image payload (8 MiB)": (
            _split("image_b64", b64(os.urandom(8 << 20)).decode()),
            "INVALID_PARAMETER_VALUE",
            "row 0: not a usable image: ",
        ),
        "truncated PNG": (
            _split("image_b64", b64(png[: len(png) // 2]).decode()),
            "INVALID_PARAMETER_VALUE",
            "row 0: not a usable image: ",
        ),
    }
    server_paths = (str(REPO), str(tmp_path), "site-packages", "Traceback")
    for what, (body, error_code, words) in bad.items():
        code, text = _post(url, body)
        answer = json.loads(text)
        assert (code, answer["error_code"]) == (BAD_REQUEST, error_code), f"{what}: HTTP {code} {text[:300]}"
        assert words in answer["message"] and "stack_trace" not in answer, f"{what}: {text[:300]}"
        assert error_code == "BAD_REQUEST" or answer["message"].startswith(words), f"{what}: {text[:300]}"
        assert not any(p in text for p in server_paths), f"{what}: the answer names server paths: {text[:300]}"
        assert len(text) < 20_000, f"{what}: the answer echoes the payload ({len(text)} chars)"
    assert proc.poll() is None
    code, text = _post(url, _split("image_b64", b64(png).decode()))  # still serving good requests
    assert code == 200 and json.loads(text)["predictions"][0]["label"]


def _png(array) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_serving_guards_pixel_limit_ood_signal_and_bodies(trained_tiny, guarded_server, tmp_path):
    """The real server: an oversized real noise PNG is refused from its header (HTTP 400, one line);
    every answer carries the energy score and the out-of-distribution flag, computed as in-process with
    the threshold evaluate fitted on val; empty and non-JSON bodies get a one-line 400."""
    import mlflow
    import numpy as np
    from mlflow.models import Model

    from vistune.evaluate import ood
    from vistune.models.classifier import Classifier

    mlflow_cfg, receipt = guarded_server.cfg, guarded_server.receipt
    cal = json.loads(trained_tiny.calibration.read_text())
    threshold = cal["ood_energy_threshold"]
    assert threshold is not None and cal["ood_val_quantile"] == 0.95
    base = (
        mlflow.MlflowClient(mlflow_cfg.tracking_uri, mlflow_cfg.tracking_uri)
        .get_model_version_download_uri("vistune-classifier", receipt["version"])
        .rstrip("/")
    )
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"{base}/MLmodel", dst_path=str(tmp_path / "mlmodel"))
    config = Model.load(local).flavors["python_function"]["config"]
    assert config["max_pixels"] == 89_478_485  # validate.max_pixels, recorded with the model

    clf = Classifier.load(trained_tiny.model, device="cpu")
    rng = np.random.default_rng(0)
    big = _png(rng.integers(0, 256, (1000, 1200, 3), dtype=np.uint8))  # 1.2 MP of real noise
    noise = _png(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    blank = _png(np.full((64, 64, 3), 255, dtype=np.uint8))
    manifest = pd.read_csv(trained_tiny.manifest, dtype={"label": str})
    digits = [(trained_tiny.raw / p).read_bytes() for p in manifest[manifest.split == "test"].path.iloc[:4]]
    proc, url = guarded_server.proc, guarded_server.url
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    code, text = _post(url, _split("image_b64", b64(big)))
    answer = json.loads(text)
    assert code == BAD_REQUEST and answer["error_code"] == "INVALID_PARAMETER_VALUE", text[:300]
    side = clf.image_size
    assert answer["message"] == (
        "row 0: image too large: 1200x1000 = 1200000 pixels > limit 1000000 (the served "
        "model's limit, validate.max_pixels or --max-pixels); send it downscaled (the "
        f"model sees {side}x{side})"
    )
    body = json.dumps(
        {"dataframe_split": {"columns": ["image_b64"], "data": [[b64(x)] for x in [noise, blank, *digits]]}}
    ).encode()
    code, text = _post(url, body)
    assert code == 200, text[:300]
    preds = json.loads(text)["predictions"]
    z = clf.logits(clf.prepare([noise, blank, *digits]))
    expected = ood.energy(z)
    assert [p["energy"] for p in preds] == pytest.approx(list(expected), abs=1e-3)
    assert [p["out_of_distribution"] for p in preds] == [bool(e > threshold) for e in expected]
    assert all(isinstance(p["out_of_distribution"], bool) for p in preds)
    # bodies MLflow's app would answer in several lines echoing them: one line each, nothing echoed
    for what, (data, words) in {
        "empty body": (b"", "empty request body; send JSON such as {"),
        "blank body": (b"  \n", "empty request body; send JSON such as {"),
        "not JSON": (
            b"hello",
            "the request body is not JSON (Expecting value at line 1 column 1); send JSON such as {",
        ),
    }.items():
        code, text = _post(url, data)
        answer = json.loads(text)
        assert (code, answer["error_code"]) == (BAD_REQUEST, "BAD_REQUEST"), f"{what}: {text[:300]}"
        assert answer["message"].startswith(words) and "\n" not in answer["message"], f"{what}: {text[:300]}"
        assert "hello" not in text, f"{what}: the answer echoes the body: {text[:300]}"
    code, text = _post(url, _split("image_b64", b64(digits[0])))  # and still serving
    assert code == 200 and json.loads(text)["predictions"][0]["label"]
    assert proc.poll() is None
