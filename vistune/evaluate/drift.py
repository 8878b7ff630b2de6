"""Is new data like the data a model was trained on? Two-sample tests between a reference (the
champion's training manifest and embeddings) and new images, folded into one decision.

Tests (each gives a p-value, and an effect size a person can read):
- classes (labelled data): chi-square on the 2 x K table of label counts; effect = total-variation
  distance of the label shares.
- image statistics from the manifests: Kolmogorov-Smirnov on width, height, aspect and brightness
  (effect = the KS statistic), chi-square on the PIL mode counts (effect = TV distance).
- features: MMD^2 between the model's penultimate embeddings (RBF kernel, median-heuristic
  bandwidth) of bounded, seeded samples, with a permutation p-value. Beyond the permutation
  resolution (no permuted value as large as the observed one) the p-value is the normal tail of
  the permutation distribution, so a strong shift scores above 1 / (permutations + 1).

The decision is one number: `drift_score = -log10(p)` of the Bonferroni-adjusted smallest p-value
(so 2.0 = "data this different would arise by chance in 1% of same-distribution samples", capped at
16); drift when it is above the threshold (`validate.drift_threshold`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    import pandas as pd

STAT_COLUMNS = ("width", "height", "aspect", "brightness")
REFERENCE_SAMPLE = 1000  # training images embedded for the reference (evaluate's drift_reference.npy)
PERMUTATIONS = 999
MIN_P = 1e-16  # p-values below it count as 1e-16: drift_score tops out at 16 (beyond that only extrapolation)


@dataclass(frozen=True)
class DriftTest:
    name: str  # classes | width | height | aspect | brightness | mode | features
    p_value: float
    effect: float  # TV distance, KS statistic or MMD^2
    n_reference: int
    n_new: int


@dataclass
class DriftResult:
    """One comparison: the decision plus every test behind it (`as_metrics` is the DVC metric)."""

    status: str  # "compared" | "skipped"
    reason: str = ""  # why skipped, or which test decided
    drift_score: float = 0.0  # -log10 of the Bonferroni-adjusted smallest p-value
    p_value: float = 1.0  # that adjusted p-value
    threshold: float = 0.0
    drifted: bool = False
    reference: str = ""  # e.g. "vistune-classifier v3 (champion)"
    tests: list[DriftTest] = field(default_factory=list)

    def as_metrics(self) -> dict:
        """Flat JSON for `dvc metrics show`: the decision, then `<test>_p` and `<test>_effect`."""
        out = {k: v for k, v in asdict(self).items() if k != "tests"}
        for t in self.tests:
            out[f"{t.name}_p"] = float(f"{t.p_value:.6g}")
            out[f"{t.name}_effect"] = round(t.effect, 6)
        out["n_reference"] = max((t.n_reference for t in self.tests), default=0)
        out["n_new"] = max((t.n_new for t in self.tests), default=0)
        return out


def skipped(reason: str, threshold: float = 0.0) -> DriftResult:
    return DriftResult(status="skipped", reason=reason, threshold=threshold)


def _table_test(name: str, ref: Sequence, new: Sequence) -> DriftTest | None:
    """Chi-square on the 2 x K contingency table of category counts; effect = TV distance of the shares."""
    import pandas as pd
    from scipy.stats import chi2_contingency

    ref_counts, new_counts = pd.Series(list(ref)).value_counts(), pd.Series(list(new)).value_counts()
    cats = sorted(set(ref_counts.index) | set(new_counts.index), key=str)
    if not len(ref_counts) or not len(new_counts):
        return None
    table = np.array([[ref_counts.get(c, 0) for c in cats], [new_counts.get(c, 0) for c in cats]], dtype=float)
    tvd = 0.5 * float(np.abs(table[0] / table[0].sum() - table[1] / table[1].sum()).sum())
    p = 1.0 if len(cats) < 2 else float(chi2_contingency(table, correction=False).pvalue)
    return DriftTest(name, p, tvd, int(table[0].sum()), int(table[1].sum()))


def _ks_test(name: str, ref: np.ndarray, new: np.ndarray) -> DriftTest | None:
    from scipy.stats import ks_2samp

    ref, new = ref[np.isfinite(ref)], new[np.isfinite(new)]
    if not len(ref) or not len(new):
        return None
    res = ks_2samp(ref, new)
    return DriftTest(name, float(res.pvalue), float(res.statistic), len(ref), len(new))


def manifest_tests(reference: pd.DataFrame, new: pd.DataFrame, labelled: bool) -> list[DriftTest]:
    """Class shares (when `labelled`), size / aspect / brightness distributions and mode shares."""
    import pandas as pd  # here, not at import: the embedding half runs where only torch/numpy are installed

    tests = []
    if labelled:
        tests.append(_table_test("classes", reference.label.astype(str), new.label.astype(str)))
    for col in STAT_COLUMNS:
        if col in reference and col in new:
            tests.append(
                _ks_test(
                    col,
                    pd.to_numeric(reference[col], errors="coerce").to_numpy(float),
                    pd.to_numeric(new[col], errors="coerce").to_numpy(float),
                )
            )
    if "mode" in reference and "mode" in new:
        tests.append(_table_test("mode", reference["mode"].astype(str), new["mode"].astype(str)))
    return [t for t in tests if t is not None]


def _rbf_kernel(z: np.ndarray) -> np.ndarray:
    """RBF kernel matrix with the median heuristic: bandwidth^2 = median pairwise squared distance."""
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    off = d2[~np.eye(len(z), dtype=bool)]
    med = float(np.median(off)) if off.size else 1.0
    return np.exp(-d2 / (med if med > 0 else 1.0))


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> DriftTest:
    """MMD^2 (biased V-statistic) between samples x and y with a permutation p-value.

    Each assignment is a signed weight vector s (1/m for x, -1/n for y), MMD^2 = s^T K s; all
    permutations are one matrix product K @ S, so 999 permutations of 1,000 + 1,000 points take ~1 s.
    """
    z = np.concatenate([x, y]).astype(np.float64)
    m, n = len(x), len(y)
    k = _rbf_kernel(z)
    s0 = np.concatenate([np.full(m, 1.0 / m), np.full(n, -1.0 / n)])
    observed = float(s0 @ k @ s0)
    rng = np.random.default_rng(seed)
    perms = rng.permuted(np.repeat(s0[:, None], permutations, axis=1), axis=0)  # one permutation per column
    null = np.einsum("ij,ij->j", perms, k @ perms)
    hits = int((null >= observed).sum())
    p = (hits + 1) / (permutations + 1)
    if hits == 0 and null.std() > 0:
        from scipy.stats import norm

        p = min(p, float(norm.sf((observed - null.mean()) / null.std())))
    return DriftTest("features", max(p, MIN_P), observed, m, n)


def sample_index(n: int, k: int, seed: int) -> np.ndarray:
    """At most `k` of `n` row indices, seeded and sorted (the same rows every run)."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


@torch.no_grad()
def embed(backbone, images: torch.Tensor, device: torch.device, batch_size: int = 256) -> np.ndarray:
    """Penultimate embeddings: the input of the classification layer (pooled features), N x D float32.

    A forward hook on `backbone.head_module()` works for every timm/torchvision backbone the
    registry builds; the batch runs exactly as prediction does (normalization inside the net)."""
    from vistune.models.device_policy import autocast, batches, to_device

    feats: list[torch.Tensor] = []
    hook = backbone.head_module().register_forward_hook(lambda mod, inp, out: feats.append(inp[0].float().flatten(1)))
    try:
        net = backbone.net.to(device).eval()
        for idx in batches(images.shape[0], batch_size, None):
            with autocast(device, True):
                net(to_device(images[idx], device))
    finally:
        hook.remove()
    return torch.cat(feats).cpu().numpy() if feats else np.zeros((0, 0), dtype=np.float32)


def decide(tests: list[DriftTest], threshold: float, reference: str) -> DriftResult:
    """Bonferroni over the tests: drift_score = -log10(min(1, k * min p)); drift above `threshold`."""
    if not tests:
        return skipped("nothing to compare (no rows on one side)", threshold)
    worst = min(tests, key=lambda t: t.p_value)
    p = min(1.0, len(tests) * worst.p_value)
    score = round(-math.log10(max(p, MIN_P)), 4) + 0.0  # + 0.0: no "-0.0" in the metric
    drifted = score > threshold
    reason = (
        f"{worst.name} differs most (p={worst.p_value:.3g}, effect {worst.effect:.3g}); "
        f"adjusted p={p:.3g} over {len(tests)} tests"
    )
    return DriftResult("compared", reason, score, float(f"{p:.6g}"), threshold, drifted, reference, tests)


def compare(
    reference: pd.DataFrame,
    new: pd.DataFrame,
    threshold: float,
    *,
    reference_name: str = "",
    reference_features: np.ndarray | None = None,
    new_features: np.ndarray | None = None,
    labelled: bool = True,
    seed: int = 0,
) -> DriftResult:
    """All tests between a reference manifest (+ embeddings) and a new one; one decision."""
    tests = manifest_tests(reference, new, labelled and "label" in new and new.label.astype(str).ne("").all())
    if (
        reference_features is not None
        and new_features is not None
        and len(reference_features) > 1
        and len(new_features) > 1
    ):
        tests.append(mmd_test(reference_features, new_features, seed=seed))
    return decide(tests, threshold, reference_name)


def summary_line(result: DriftResult) -> str:
    if result.status == "skipped":
        return f"drift: skipped ({result.reason})"
    verdict = "DRIFT" if result.drifted else "no drift"
    return (
        f"drift vs {result.reference}: {verdict} (drift_score {result.drift_score:.2f} "
        f"{'>' if result.drifted else '<='} threshold {result.threshold}); {result.reason}"
    )


def reference_features(
    backbone, images: torch.Tensor, device: torch.device, seed: int = 0, size: int = REFERENCE_SAMPLE
) -> np.ndarray:
    """Embeddings of a seeded sample of the training images (float16: ~2.5 MB for 1,000 x 1,280),
    saved beside the model so a later comparison needs neither the images nor a re-decode."""
    idx = torch.from_numpy(sample_index(images.shape[0], size, seed))
    return embed(backbone, images[idx], device).astype(np.float16)


def save_reference(path, features: np.ndarray) -> None:
    from vistune.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, features, allow_pickle=False)  # .npy: same features -> same bytes (DVC md5)


def load_reference(path) -> np.ndarray:
    return np.load(path, allow_pickle=False).astype(np.float32)
