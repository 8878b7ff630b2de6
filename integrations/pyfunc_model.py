"""The served model: an MLflow pyfunc that embeds preprocessing and labels.

Input: a DataFrame with one of the columns `image_b64` (base64 text, what HTTP clients send),
`image` (raw bytes) or `path` (a file under the image root: `VISTUNE_IMAGE_ROOT`, default the
working directory, so a request to a served model cannot read files elsewhere on the host). Output: `label`, `confidence` and one `p_<class>`
column per class. Decoding and resizing are `vistune.models.classifier.Classifier`'s, so serving sees
exactly the pixels training saw; probabilities use the temperature evaluate fitted on val
(artifact `calibration`, absent = 1.0).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

INPUT_COLUMNS = ("image_b64", "image", "path")
IMAGE_ROOT_ENV = "VISTUNE_IMAGE_ROOT"


class InputError(MlflowException, ValueError):
    """A request's own mistake, in one line. A ValueError to in-process callers; to `mlflow models
    serve` an INVALID_PARAMETER_VALUE MlflowException, answered with HTTP 400 and this message (a
    plain ValueError becomes a generic 400 whose only detail is the server's Python traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def image_root() -> Path:
    """Where `path` inputs may point: $VISTUNE_IMAGE_ROOT, else the current working directory."""
    return Path(os.environ.get(IMAGE_ROOT_ENV) or os.getcwd()).resolve()


def _read_confined(value: str, root: Path, row: int) -> bytes:
    """Bytes of `value` (relative to `root` or absolute), refused when it resolves outside `root`
    (`..`, absolute paths, symlinks): a served model must not become a file reader for the host."""
    try:
        path = (root / value).resolve()
    except (OSError, ValueError, RuntimeError):
        raise InputError(f"row {row}: path {value!r} is not a usable file path") from None
    if not path.is_relative_to(root):
        raise InputError(f"row {row}: path {value!r} is outside the image root {root}; send the image as "
                         f"image_b64, or set {IMAGE_ROOT_ENV} to a folder that holds it")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"row {row}: cannot read path {value!r} ({exc.strerror or exc})") from None


def _blobs(model_input: pd.DataFrame) -> list[bytes]:
    cols = [c for c in INPUT_COLUMNS if c in model_input.columns]
    if not cols:
        # a served or loaded pyfunc never sees other columns: MLflow's schema check drops them first
        got = f"got {list(model_input.columns)}" if len(model_input.columns) else "the request had none of them"
        raise InputError(f"input needs one of the columns {list(INPUT_COLUMNS)}; {got}")
    blobs = []
    root = image_root() if "path" in cols else Path("/")
    for i, row in enumerate(model_input[cols].itertuples(index=False)):
        values = dict(zip(cols, row))
        if values.get("image_b64") is not None and isinstance(values["image_b64"], str):
            try:
                blobs.append(base64.b64decode(values["image_b64"], validate=True))
            except (binascii.Error, ValueError):
                raise InputError(f"row {i}: image_b64 is not valid base64") from None
        elif values.get("image") is not None and isinstance(values["image"], (bytes, bytearray)):
            blobs.append(bytes(values["image"]))
        elif values.get("path") is not None and isinstance(values["path"], str):
            blobs.append(_read_confined(values["path"], root, i))
        else:
            raise InputError(f"row {i}: no image given (set one of {list(INPUT_COLUMNS)})")
    return blobs


class VistuneClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from vistune.models.classifier import Classifier
        from vistune.models.trust import verify_sha256

        expected = (getattr(context, "model_config", None) or {}).get("model_sha256")
        if expected:  # models logged before the digest was recorded load as they are
            verify_sha256(Path(context.artifacts["model"]), expected, "the model's MLmodel model_config.model_sha256")
        temperature = 1.0
        calibration = context.artifacts.get("calibration")
        if calibration:
            temperature = float(json.loads(Path(calibration).read_text()).get("temperature") or 1.0)
        self.clf = Classifier.load(context.artifacts["model"], device="cpu", temperature=temperature)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from vistune.data.imageio import ImageDecodeError

        try:
            labels, probs = self.clf.predict_bytes(_blobs(model_input))
        except ImageDecodeError as exc:
            raise InputError(f"bad image: {exc}") from None
        out = pd.DataFrame({"label": labels, "confidence": probs.max(axis=1) if len(labels) else []})
        for j, c in enumerate(self.clf.classes):
            out[f"p_{c}"] = probs[:, j] if len(labels) else []
        return out
