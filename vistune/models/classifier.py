"""The trained model as one file, and the object that turns raw image bytes into predictions.

`model.pt` holds the state dict plus everything needed to use it without the pipeline:
backbone spec, class names, input size and normalization. It loads with
`torch.load(weights_only=True)`; the serving model and `evaluate` both go through `Classifier`.
The state dict is the bare network's (normalization is rebuilt from `mean`/`std` as a module in
front of it, see `Backbone.net`), so files written before normalization moved into the model load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vistune.models.backbones import Backbone, create_backbone
from vistune.errors import WeightsError
from vistune.data.imageio import decode_rgb
from vistune.io import save_torch
from vistune.data.preprocess import resize_rgb
from vistune.models.device_policy import place, predict_logits, resolve_device


def save_model(
    path: Path, backbone: Backbone, state_dict: dict, classes: list[str], image_size: int, extra: dict
) -> None:
    payload = {
        "format": "vistune-model/1",
        "spec": backbone.spec,
        "classes": list(classes),
        "image_size": int(image_size),
        "mean": list(backbone.mean),
        "std": list(backbone.std),
        "state_dict": state_dict,
        "extra": extra,
    }
    save_torch(payload, path)  # same weights -> same bytes (and md5 for DVC)


def prepare_images(blobs: Sequence[bytes], image_size: int) -> np.ndarray:
    """Raw encoded images -> uint8 N x 3 x S x S, decoded and resized exactly as at train time
    (what every served model, torch or ONNX, is fed)."""
    arrs = [resize_rgb(decode_rgb(b), image_size) for b in blobs]
    return np.stack(arrs) if arrs else np.empty((0, 3, image_size, image_size), dtype=np.uint8)


def _network_state(state: dict) -> dict:
    """The bare network's keys; a state dict taken from `Backbone.net` (keys `model.*`) works too."""
    if state and all(k.startswith("model.") for k in state):
        return {k[len("model.") :]: v for k, v in state.items()}
    return state


@dataclass
class Classifier:
    backbone: Backbone
    classes: list[str]
    image_size: int
    device: torch.device
    temperature: float = 1.0  # softmax(logits / T): T fitted on val by evaluate; 1.0 = uncalibrated

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", temperature: float = 1.0) -> Classifier:
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: model file not found; run `dvc repro train` first")
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != "vistune-model/1":
            raise WeightsError(f"{path}: not a vistune model file (expected format vistune-model/1)")
        backbone = create_backbone(payload["spec"], len(payload["classes"]), pretrained="none")
        backbone.model.load_state_dict(_network_state(payload["state_dict"]))
        backbone = dataclasses.replace(backbone, mean=tuple(payload["mean"]), std=tuple(payload["std"]))
        dev = resolve_device(device)
        place(backbone, dev).eval()  # channels_last, as at train time
        return cls(backbone, list(payload["classes"]), int(payload["image_size"]), dev, float(temperature))

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """uint8 NCHW already at `image_size` -> logits."""
        return predict_logits(self.backbone, images, self.device, batch_size=batch_size)

    def prepare(self, blobs: Sequence[bytes]) -> torch.Tensor:
        """Raw encoded images -> uint8 NCHW batch, decoded exactly as at train time."""
        return torch.from_numpy(prepare_images(blobs, self.image_size))

    def predict_bytes(self, blobs: Sequence[bytes]) -> tuple[list[str], np.ndarray]:
        """(labels, probabilities N x C) for raw image bytes."""
        return self.predict_images(self.prepare(blobs))

    def predict_images(self, images: torch.Tensor) -> tuple[list[str], np.ndarray]:
        """(labels, temperature-scaled probabilities N x C) for a `prepare`d uint8 batch."""
        probs = (self.logits(images) / self.temperature).softmax(dim=1).numpy()
        return [self.classes[i] for i in probs.argmax(axis=1)], probs
