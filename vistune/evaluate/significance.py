"""Is the challenger really better than the champion? Paired tests on one evaluation set.

Both models are scored on the same images, so the tests are paired: McNemar's test on per-image
correctness (only the images the two disagree on carry information) and a paired bootstrap
confidence interval of the metric difference (images resampled once, both models scored on the
same resample). A metric gap that is smaller than sampling noise on a few hundred test images
must not move the `champion` alias.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

GATE_TESTS = ("none", "mcnemar", "bootstrap")
EXACT_BELOW = 25  # discordant pairs below this: exact binomial test; otherwise chi-square (1 df) + continuity


@dataclass(frozen=True)
class McNemarResult:
    gained: int  # images the challenger gets right and the champion gets wrong
    lost: int  # images the champion gets right and the challenger gets wrong
    statistic: float
    p_value: float  # two-sided
    method: str  # "exact" | "chi2" | "none" (no discordant pairs)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BootstrapResult:
    metric: str
    delta: float  # challenger - champion on the full set
    low: float
    high: float
    confidence: float
    p_value: float  # one-sided: share of resamples where the challenger is not better
    n_boot: int

    def as_dict(self) -> dict:
        return asdict(self)


def mcnemar(
    champion_correct: np.ndarray, challenger_correct: np.ndarray, exact_below: int = EXACT_BELOW
) -> McNemarResult:
    """McNemar's test of two classifiers' per-image correctness on the same images."""
    a = np.asarray(champion_correct, dtype=bool)
    b = np.asarray(challenger_correct, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"champion and challenger were scored on different images ({a.shape} vs {b.shape})")
    gained, lost = int((b & ~a).sum()), int((a & ~b).sum())
    n = gained + lost
    if n == 0:
        return McNemarResult(gained, lost, 0.0, 1.0, "none")
    from scipy.stats import binomtest, chi2

    if n < exact_below:  # exact binomial: the discordant images split 50/50 under "no difference"
        return McNemarResult(gained, lost, float(min(gained, lost)), float(binomtest(gained, n, 0.5).pvalue), "exact")
    stat = (abs(gained - lost) - 1.0) ** 2 / n
    return McNemarResult(gained, lost, float(stat), float(chi2.sf(stat, df=1)), "chi2")


def macro_f1_rows(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 of every row of (B, N) label/prediction matrices, over classes present in that row's
    labels (the definition `vistune.evaluate.metrics.summarize` uses). Kept in numpy: scoring all
    bootstrap resamples at once took 0.03 s vs 21.6 s for one scikit-learn f1_score call per resample
    (1,000 x 269 images; benchmarks/library_ops.py, RESULTS.md 2026-12-02)."""
    y, pred = np.atleast_2d(y), np.atleast_2d(pred)
    f1_sum = np.zeros(y.shape[0])
    present = np.zeros(y.shape[0])
    for c in range(n_classes):
        is_y, is_p = y == c, pred == c
        tp = (is_y & is_p).sum(axis=1)
        support, predicted = is_y.sum(axis=1), is_p.sum(axis=1)
        denom = support + predicted
        f1_sum += np.divide(2.0 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
        present += support > 0
    return np.divide(f1_sum, present, out=np.zeros(len(present)), where=present > 0)


def accuracy_rows(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    y, pred = np.atleast_2d(y), np.atleast_2d(pred)
    return (y == pred).mean(axis=1) if y.shape[1] else np.zeros(y.shape[0])


METRICS = {"accuracy": accuracy_rows, "macro_f1": macro_f1_rows}


def paired_bootstrap(
    y: np.ndarray,
    champion_pred: np.ndarray,
    challenger_pred: np.ndarray,
    metric: str,
    n_classes: int,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
) -> BootstrapResult:
    """Percentile CI of metric(challenger) - metric(champion) over `n_boot` paired resamples."""
    if metric not in METRICS:
        raise ValueError(f"unknown bootstrap metric {metric!r}; valid: {sorted(METRICS)}")
    fn = METRICS[metric]
    y, pa, pb = (np.asarray(v, dtype=np.int64) for v in (y, champion_pred, challenger_pred))
    if not (y.shape == pa.shape == pb.shape):
        raise ValueError("labels and both prediction arrays must have the same length")
    delta = float(fn(y, pb, n_classes)[0] - fn(y, pa, n_classes)[0])
    if len(y) == 0 or n_boot <= 0:
        return BootstrapResult(metric, delta, delta, delta, confidence, 1.0, 0)
    rng = np.random.default_rng(seed)
    deltas = []
    for start in range(0, n_boot, chunk):  # bounded memory for big test sets
        idx = rng.integers(0, len(y), size=(min(chunk, n_boot - start), len(y)))
        deltas.append(fn(y[idx], pb[idx], n_classes) - fn(y[idx], pa[idx], n_classes))
    d = np.concatenate(deltas)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(d, [tail, 1.0 - tail])
    return BootstrapResult(metric, delta, float(low), float(high), confidence, float((d <= 0).mean()), int(n_boot))


def per_class_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """F1 of each class (0 where a class is neither present nor predicted)."""
    from sklearn.metrics import f1_score

    return f1_score(np.asarray(y), np.asarray(pred), labels=np.arange(n_classes), average=None, zero_division=0).astype(
        float
    )


def verdict(test: str, alpha: float, mc: McNemarResult, boot: BootstrapResult) -> str:
    """The test's finding in words a reader of the gate report expects: "significantly better",
    "significantly worse" or "no significant difference" (challenger vs champion), "not tested"."""
    if test == "none":
        return "not tested"
    if test == "mcnemar":
        if mc.p_value >= alpha or mc.gained == mc.lost:
            return "no significant difference"
        return "significantly better" if mc.gained > mc.lost else "significantly worse"
    if test == "bootstrap":
        return (
            "significantly better"
            if boot.low > 0
            else "significantly worse"
            if boot.high < 0
            else "no significant difference"
        )
    raise ValueError(f"unknown gate test {test!r}; valid: {list(GATE_TESTS)}")


def is_significant(test: str, alpha: float, mc: McNemarResult, boot: BootstrapResult) -> tuple[bool, str]:
    """(challenger significantly better?, one-line why) under `test` at level `alpha`.

    McNemar is two-sided, so "better" also needs more images gained than lost; the bootstrap
    needs the whole (1 - alpha) interval of the gate metric's difference above zero.
    """
    if test == "none":
        return True, "no significance test (register.gate_test: none)"
    if test == "mcnemar":
        ok = mc.p_value < alpha and mc.gained > mc.lost
        return ok, (
            f"McNemar p={mc.p_value:.4g} ({mc.method}; +{mc.gained}/-{mc.lost} images) "
            f"{'<' if mc.p_value < alpha else '>='} alpha {alpha}"
        )
    if test == "bootstrap":
        ok = boot.low > 0.0
        return ok, (
            f"bootstrap {boot.metric} delta {boot.delta:+.4f}, {boot.confidence:.0%} CI "
            f"[{boot.low:+.4f}, {boot.high:+.4f}] {'excludes' if ok else 'includes'} 0"
        )
    raise ValueError(f"unknown gate test {test!r}; valid: {list(GATE_TESTS)}")


def bootstrap_ci(
    y: np.ndarray,
    pred: np.ndarray,
    metric: str,
    n_classes: int,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk: int = 250,
) -> tuple[float, float, float]:
    """(value, low, high): percentile bootstrap CI of one model's metric over resampled test images,
    the sampling noise a headline figure on a few hundred images carries (shown on the model card)."""
    if metric not in METRICS:
        raise ValueError(f"unknown bootstrap metric {metric!r}; valid: {sorted(METRICS)}")
    fn = METRICS[metric]
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    value = float(fn(y, pred, n_classes)[0])
    if len(y) == 0 or n_boot <= 0:
        return value, value, value
    rng = np.random.default_rng(seed)
    scores = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, len(y), size=(min(chunk, n_boot - start), len(y)))
        scores.append(fn(y[idx], pred[idx], n_classes))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(np.concatenate(scores), [tail, 1.0 - tail])
    return value, float(low), float(high)
