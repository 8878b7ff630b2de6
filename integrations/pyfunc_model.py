"""The served model: an MLflow pyfunc that embeds preprocessing and labels.

Input: a DataFrame with one of the columns `image_b64` (base64 text, what HTTP clients send),
`image` (raw bytes) or `path` (a file under the image root: `VISTUNE_IMAGE_ROOT`, default the
working directory, so a request to a served model cannot read files elsewhere on the host). Output: `label`, `confidence` and one `p_<class>`
column per class, `energy` and `out_of_distribution` (the energy score of the logits over the
threshold evaluate fitted on val, `vistune.evaluate.ood`: ~5% of in-distribution images are flagged;
null for models logged without one). An image over the pixel limit (`validate.max_pixels`
recorded with the model, or $VISTUNE_MAX_PIXELS / `vistune serve --max-pixels` if lower) is
refused from its header, before decoding, with HTTP 400. Decoding and resizing are `vistune.models.classifier`'s, so serving sees
exactly the pixels training saw (an ONNX variant from `compress` runs through
`vistune.models.onnx_classifier.OnnxClassifier`, same input and output); probabilities use the temperature evaluate fitted on val
(artifact `calibration`, absent = 1.0).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE

INPUT_COLUMNS = ("image_b64", "image", "path")
IMAGE_ROOT_ENV = "VISTUNE_IMAGE_ROOT"
MAX_PIXELS_ENV = "VISTUNE_MAX_PIXELS"
_log = logging.getLogger(__name__)


class _OneLine(MlflowException):
    """An MlflowException whose message the scoring server cannot rewrite: `mlflow models serve`
    prefixes "Failed to predict data '<the request frame>'" to a prediction error's message, which
    buries the reason under the client's own payload. The client's JSON `message` is exactly ours."""

    @property
    def message(self) -> str:
        return self._one_line

    @message.setter
    def message(self, value: str) -> None:
        if not hasattr(self, "_one_line"):  # set once, by MlflowException.__init__
            self._one_line = value


class InputError(_OneLine, ValueError):
    """A request's own mistake, in one line naming the row and the fix. A ValueError to in-process
    callers; to `mlflow models serve` an INVALID_PARAMETER_VALUE MlflowException, answered with HTTP
    400 and this message (a plain ValueError becomes a generic 400 whose only detail is the server's
    Python traceback)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


class ServerError(_OneLine):
    """The model itself failed: HTTP 500 with one line; the traceback goes to the server log only."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code=INTERNAL_ERROR)


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
    if not path.is_relative_to(root):  # the answer never names the server's own folders
        raise InputError(
            f"row {row}: path {value!r} is outside the server's image root; send a path relative "
            f"to it without '..', or the image itself as image_b64"
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"row {row}: cannot read path {value!r} ({exc.strerror or type(exc).__name__}); "
            f"paths are relative to the server's image root"
        ) from None


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
                raise InputError(
                    f"row {i}: image_b64 is not valid base64; send the image file's bytes "
                    f"base64-encoded (standard alphabet, no line breaks)"
                ) from None
        elif values.get("image") is not None and isinstance(values["image"], (bytes, bytearray)):
            blobs.append(bytes(values["image"]))
        elif values.get("path") is not None and isinstance(values["path"], str):
            blobs.append(_read_confined(values["path"], root, i))
        else:
            raise InputError(f"row {i}: no image given (set one of {list(INPUT_COLUMNS)})")
    if not blobs:
        raise InputError("the request has no rows; send one row per image")
    return blobs


class VistuneClassifierModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from vistune.models.classifier import Classifier
        from vistune.models.trust import verify_sha256

        expected = (getattr(context, "model_config", None) or {}).get("model_sha256")
        if expected:  # models logged before the digest was recorded load as they are
            verify_sha256(Path(context.artifacts["model"]), expected, "the model's MLmodel model_config.model_sha256")
        from vistune.data.imageio import DEFAULT_MAX_PIXELS

        config = getattr(context, "model_config", None) or {}
        self.max_pixels = min(
            int(config.get("max_pixels") or DEFAULT_MAX_PIXELS),
            int(os.environ.get(MAX_PIXELS_ENV) or DEFAULT_MAX_PIXELS),
        )
        temperature, self.ood_threshold = 1.0, None
        calibration = context.artifacts.get("calibration")
        if calibration:
            cal = json.loads(Path(calibration).read_text())
            temperature = float(cal.get("temperature") or 1.0)
            self.ood_threshold = cal.get("ood_energy_threshold")
        model = Path(context.artifacts["model"])
        self.onnx = model.suffix == ".onnx"
        if self.onnx:  # a compress variant (vistune.variant tag): ONNX Runtime, same input format
            from vistune.models.onnx_classifier import OnnxClassifier

            self.clf = OnnxClassifier.load(model, temperature=temperature)
        else:
            self.clf = Classifier.load(model, device="cpu", temperature=temperature)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        try:
            return self._predict(model_input)
        except InputError:
            raise
        except Exception:  # a bug or a broken model: the client gets one line, the log the traceback
            _log.exception("vistune model failed on a request")
            raise ServerError(
                "the model failed on this request (a server error, logged by the server); "
                "retry, or report it with the request"
            ) from None

    def _predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        import torch

        from vistune.data.imageio import ImageDecodeError, open_header
        from vistune.evaluate import ood

        images = []
        for i, blob in enumerate(_blobs(model_input)):
            try:
                open_header(blob, max_pixels=self.max_pixels)  # the header's size, before any pixel is decoded
                images.append(self.clf.prepare([blob]))
            except ImageDecodeError as exc:
                if exc.code == "bomb":
                    size, side = exc.args[0].removeprefix("decompression bomb: "), self.clf.image_size
                    raise InputError(
                        f"row {i}: image too large: {size} (the served model's limit, validate.max_pixels "
                        f"or --max-pixels); send it downscaled (the model sees {side}x{side})"
                    ) from None
                raise InputError(
                    f"row {i}: not a usable image: {exc}; send the original image file (PNG, JPEG, WEBP, ...)"
                ) from None
        batch = torch.cat(images)
        z = torch.from_numpy(self.clf.logits(batch.numpy())) if self.onnx else self.clf.logits(batch)
        probs = (z.float() / self.clf.temperature).softmax(dim=1).numpy()
        threshold = self.ood_threshold
        out = pd.DataFrame(
            {"label": [self.clf.classes[j] for j in probs.argmax(axis=1)], "confidence": probs.max(axis=1)}
        )
        for j, c in enumerate(self.clf.classes):
            out[f"p_{c}"] = probs[:, j]
        out["energy"] = ood.energy(z)
        out["out_of_distribution"] = ood.flags(z, threshold) if threshold is not None else None
        return out
