"""`vistune init`'s measurement on the user's own images: how far frozen ImageNet features get, at which input size.

A stratified sample of the train split (SAMPLE images) is embedded once per candidate input size by the backbone
`train` would start from (`vistune.data.features`, cached by sha256 in validate's feature cache, so `validate`
reuses the rows that match its backbone and size), and a logistic regression on those features is scored
out of sample in K folds (`vistune.data.label_issues.out_of_sample_probs`, the label-issue search's own head).

What the recipe learns from it (vistune.recipe):
- the frozen probe's accuracy: near 1, the features already separate the classes and fine-tuning has little to
  win; far from it, the set is far from ImageNet's features and fine-tuning is worth its cost;
- the smallest input size whose probe accuracy is within SIZE_TOLERANCE of the best: the pixels that carry the
  classes, rather than the backbone's native size (a 64-px tile upsampled to 224 costs 12x the compute);
- where the recipe trains the head alone: each offline backbone's probe accuracy at the size it would run at
  (`score_backbones`), so the backbone is the one whose features separate this data best, not the largest that
  fits the budget (on cub_warblers Lite2 @260 scored test 0.858 against Lite1 @240's 0.902);
- the forward images/s of this machine now, against the quiet-machine figures the recipe's cost model holds:
  a busy CPU gets a note beside the estimate, the choices do not change (so `init` stays idempotent).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vistune.data.features import FeatureSpec, Source, embed_files
from vistune.data.label_issues import out_of_sample_probs

SAMPLE = 300  # images embedded per size: ~5 s per size for Lite0 at 224 px on 2 CPU threads
FOLDS = 5
SIZE_TOLERANCE = 0.01  # a smaller input within 1 point of the best probe accuracy is taken (rule of thumb)


@dataclass(frozen=True)
class SizeCheck:
    size: int
    accuracy: float  # K-fold out-of-sample accuracy of a linear head on frozen features
    images_per_s: float | None  # forward (decode included) images/s measured now; None when all came from cache


@dataclass(frozen=True)
class BackboneCheck:
    model: str
    size: int
    accuracy: float  # K-fold out-of-sample accuracy of a linear head on this backbone's frozen features


@dataclass(frozen=True)
class Measurement:
    backbone: str
    n_images: int
    n_classes: int
    checks: tuple[SizeCheck, ...]  # smallest size first
    seconds: float
    backbones: tuple[BackboneCheck, ...] = ()  # `score_backbones`: each offline backbone at its probe size

    def backbone_accuracy(self, model: str) -> float | None:
        return next((b.accuracy for b in self.backbones if b.model == model), None)

    @property
    def best_accuracy(self) -> float:
        return max(c.accuracy for c in self.checks)

    def size_choice(self) -> SizeCheck:
        """The smallest size whose probe accuracy is within SIZE_TOLERANCE of the best."""
        return next(c for c in self.checks if c.accuracy >= self.best_accuracy - SIZE_TOLERANCE)

    @property
    def smaller_size(self) -> SizeCheck | None:
        """`size_choice` where it is below the largest size checked (the native one), else None."""
        choice = self.size_choice()
        return choice if choice.size < self.checks[-1].size else None

    def describe(self) -> list[str]:
        lines = [
            f"measured: a linear head on {self.backbone}'s frozen ImageNet features, {FOLDS}-fold on "
            f"{self.n_images} train images ({self.n_classes} classes), {self.seconds:.0f} s"
        ]
        for c in self.checks:
            speed = "" if c.images_per_s is None else f", {c.images_per_s:.0f} img/s"
            lines.append(f"  {c.size:>4} px: accuracy {c.accuracy:.3f}{speed}")
        for b in self.backbones:
            lines.append(f"  {b.model} at {b.size} px: accuracy {b.accuracy:.3f}")
        return lines


@dataclass(frozen=True)
class Sample:
    """The stratified train sample the checks score: read once, embedded once per backbone and size."""

    reads: tuple[Source, ...]
    shas: tuple[str, ...]
    y: np.ndarray  # class index per image, into `names`
    names: tuple[str, ...]


def cache_file(cache_dir: Path, model: str, size: int) -> Path:
    """Where `measure` keeps one backbone's features at one size (a `vistune.data.features` cache file)."""
    return cache_dir / f"{model.replace(':', '-').replace('/', '-')}-{size}.npz"


def stratified_sample(labels: Sequence[str], n: int, seed: int = 0) -> np.ndarray:
    """Indices of at most `n` items, each class in its share (at least FOLDS per class where it has them)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if len(labels) <= n:
        return np.arange(len(labels))
    picked = []
    for cls in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == cls)
        take = max(min(FOLDS, len(idx)), round(n * len(idx) / len(labels)))
        picked.append(rng.choice(idx, size=min(take, len(idx)), replace=False))
    return np.sort(np.concatenate(picked))


def sample_of(reads: Sequence[Source], shas: Sequence[str], labels: Sequence[str], seed: int = 0) -> Sample:
    """A stratified sample of at most SAMPLE of (reads, shas, labels)."""
    pick = stratified_sample(labels, SAMPLE, seed)
    names = tuple(sorted({labels[i] for i in pick}))
    y = np.array([names.index(labels[i]) for i in pick])
    return Sample(tuple(reads[i] for i in pick), tuple(shas[i] for i in pick), y, names)


def _score(sample: Sample, spec: FeatureSpec, cache_dir: Path | None, seed: int) -> SizeCheck:
    """One backbone at one size: embed the sample (cached), K-fold probe accuracy, images/s of the new rows."""
    t0 = time.perf_counter()
    cached = None if cache_dir is None else cache_file(cache_dir, spec.model, spec.image_size)
    feats, n_new = embed_files(list(sample.reads), list(sample.shas), spec, cached)
    speed = n_new / (time.perf_counter() - t0) if n_new else None
    probs = out_of_sample_probs(feats, sample.y, folds=FOLDS, seed=seed)
    return SizeCheck(spec.image_size, round(float((probs.argmax(1) == sample.y).mean()), 4), speed)


def measure(
    sample: Sample, backbone: FeatureSpec, sizes: Sequence[int], cache_dir: Path | None = None, seed: int = 0
) -> Measurement:
    """Probe accuracy per input size on `sample`; `backbone.image_size` is replaced by each size. Features are
    cached per backbone and size in `cache_dir` (`cache_file`)."""
    t0 = time.perf_counter()
    checks = [
        _score(
            sample, FeatureSpec(backbone.model, backbone.pretrained, backbone.pretrained_sha256, size), cache_dir, seed
        )
        for size in sizes
    ]
    checks.sort(key=lambda c: c.size)
    n = len(sample.shas)
    return Measurement(backbone.model, n, len(sample.names), tuple(checks), time.perf_counter() - t0)


def score_backbones(
    measured: Measurement, sample: Sample, sizes: dict[str, int], cache_dir: Path | None = None, seed: int = 0
) -> Measurement:
    """`measured` with each backbone in `sizes` (model -> input size) scored on the same sample; the time added."""
    t0 = time.perf_counter()
    found = []
    for model, size in sizes.items():
        check = next((c for c in measured.checks if c.size == size), None) if model == measured.backbone else None
        if check is None:
            check = _score(sample, FeatureSpec(model, "imagenet", "", size), cache_dir, seed)
        found.append(BackboneCheck(model, size, check.accuracy))
    spent = time.perf_counter() - t0
    return dataclasses.replace(measured, backbones=tuple(found), seconds=measured.seconds + spent)


def sample_source(cfg, vcfg, seed: int = 0) -> Sample:
    """The stratified train sample of any source `vistune init` can inspect (`cfg`: DataCfg, `vcfg`:
    ValidateCfg): the bytes are read where they lie; images that do not decode are left out."""
    from vistune.data.manifest import decode_facts
    from vistune.data.inspect import list_source
    from vistune.data.sources.common import IngestReport
    from vistune.io import sha256_bytes

    with list_source(cfg, IngestReport(source=cfg.source)) as (items, _kind, _carved):
        train = [it for it in items if it.split == "train"]
        pick = stratified_sample([it.label for it in train], SAMPLE * 2, seed)  # room for undecodable files
        blobs, labels = [], []
        for i in pick:
            data = train[i].read()
            if decode_facts(data, vcfg.max_pixels, vcfg.decode_timeout_s or None)["decodable"]:
                blobs.append(data)
                labels.append(train[i].label)
    shas = [sha256_bytes(b) for b in blobs]
    return sample_of([(lambda b=b: b) for b in blobs], shas, labels, seed)


def forward_images_per_s(model: str, size: int, batch: int = 16, repeats: int = 4, warm: int = 2) -> float:
    """No-grad forward images/s of `model` (random weights, channels_last) at `size` on this machine now, over
    `repeats` batches after `warm` warm-up batches (the first ones build kernels; the mean, so other work on the
    machine counts): set against the
    quiet-machine figure the cost model holds."""
    import torch

    from vistune.models.backbones import create_backbone

    net = create_backbone(model, 2, pretrained="none").model.eval().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for _ in range(warm):
            net(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            net(x)
    return batch * repeats / (time.perf_counter() - t0)
