"""Calibration: does a 0.9 confidence mean right 90% of the time?

Expected calibration error over equal-width confidence bins, the per-bin table behind a
reliability diagram, and temperature scaling (one scalar T fitted on val by minimizing NLL;
logits / T keeps the argmax, so accuracy is unchanged and only confidence moves).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch


def reliability_table(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """One row per confidence bin (lo, hi]: count, mean confidence, accuracy.

    Bin 0 also takes confidence exactly 0; empty bins are kept with count 0 so plots line up.
    """
    conf = probs.max(axis=1) if len(probs) else np.zeros(0)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)) if len(probs) else np.zeros(0, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        rows.append(
            {
                "bin_lo": edges[b],
                "bin_hi": edges[b + 1],
                "count": n,
                "confidence": float(conf[m].mean()) if n else float("nan"),
                "accuracy": float(correct[m].mean()) if n else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """sum_b (n_b / N) * |accuracy_b - confidence_b|."""
    table = reliability_table(probs, y_true, n_bins)
    total = table["count"].sum()
    if total == 0:
        return 0.0
    used = table[table["count"] > 0]
    return float((used["count"] / total * (used["accuracy"] - used["confidence"]).abs()).sum())


def fit_temperature(logits: torch.Tensor, y_true: torch.Tensor, max_iter: int = 100) -> float:
    """T > 0 minimizing the NLL of softmax(logits / T) on held-out data (LBFGS over log T).

    T stays 1 when that data holds no error: then the NLL falls all the way to T -> 0 (no minimum),
    and the "fitted" T made every test answer certain (hymenoptera, 76 val images all right: T = 0.0016,
    test NLL 19.8 and ECE worse than before scaling; benchmarks/RESULTS.md 2026-12-03).
    """
    if logits.numel() == 0:
        return 1.0
    logits = logits.detach().float()
    y_true = y_true.long()
    if bool((logits.argmax(dim=1) == y_true).all()):
        return 1.0
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / log_t.exp(), y_true)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    return t if np.isfinite(t) and t > 0 else 1.0
