"""A served ONNX variant (`compress`'s onnx / onnx_int8 files) behind `Classifier`'s interface.

The file carries its classes and input size (`vistune.models.onnx_export` metadata); images are
decoded and resized by `classifier.prepare_images`, exactly as for the torch model, and the graph
takes the uint8 pixels and normalizes them itself. onnxruntime is imported lazily.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vistune.errors import WeightsError
from vistune.models.classifier import prepare_images
from vistune.models.onnx_export import META_CLASSES, META_IMAGE_SIZE


@dataclass
class OnnxClassifier:
    session: Any  # onnxruntime.InferenceSession
    classes: list[str]
    image_size: int
    temperature: float = 1.0

    @classmethod
    def load(cls, path: str | Path, temperature: float = 1.0) -> OnnxClassifier:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: ONNX model file not found")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        if META_CLASSES not in meta or META_IMAGE_SIZE not in meta:
            raise WeightsError(
                f"{path}: not a vistune ONNX model (no {META_CLASSES} / {META_IMAGE_SIZE} metadata); "
                f"export it with vistune.models.onnx_export.export_onnx"
            )
        return cls(session, list(json.loads(meta[META_CLASSES])), int(meta[META_IMAGE_SIZE]), float(temperature))

    def logits(self, images: np.ndarray) -> np.ndarray:
        """uint8 NCHW already at `image_size` -> logits."""
        return self.session.run(None, {"images": np.ascontiguousarray(images, dtype=np.uint8)})[0]

    def prepare(self, blobs: Sequence[bytes]) -> torch.Tensor:
        """Raw encoded images -> uint8 NCHW batch, decoded exactly as at train time."""
        return torch.from_numpy(prepare_images(blobs, self.image_size))

    def predict_images(self, images: torch.Tensor) -> tuple[list[str], np.ndarray]:
        """(labels, temperature-scaled probabilities N x C) for a `prepare`d uint8 batch."""
        if len(images) == 0:
            return [], np.empty((0, len(self.classes)), dtype=np.float32)
        z = torch.from_numpy(self.logits(images.numpy())).float()
        probs = (z / self.temperature).softmax(dim=1).numpy()
        return [self.classes[i] for i in probs.argmax(axis=1)], probs

    def predict_bytes(self, blobs: Sequence[bytes]) -> tuple[list[str], np.ndarray]:
        """(labels, probabilities N x C) for raw image bytes."""
        return self.predict_images(self.prepare(blobs))
