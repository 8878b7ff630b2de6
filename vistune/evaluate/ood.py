"""An out-of-distribution signal per prediction: the energy score of the logits.

Energy E(x) = -logsumexp(logits) (Liu et al., "Energy-based Out-of-distribution Detection", 2020)
is low for inputs like the training data and rises for noise, blank frames and other domains, where
softmax confidence often stays high. The threshold is the `quantile` of the val split's energies,
so about 1 - quantile of in-distribution images are flagged; it is stored in calibration.json and
served with the model (`integrations.pyfunc_model`).
"""

from __future__ import annotations

import numpy as np
import torch

QUANTILE = 0.95  # ~95% of in-distribution (val) images pass, ~5% are flagged


def energy(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Energy score per row (higher = less like the training data)."""
    z = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits).double()
    return (-torch.logsumexp(z, dim=1)).numpy()


def fit_threshold(val_logits: torch.Tensor | np.ndarray, quantile: float = QUANTILE) -> float | None:
    """The energy at `quantile` of val; None without val images (then nothing is flagged)."""
    e = energy(val_logits)
    return float(np.quantile(e, quantile)) if len(e) else None


def flags(logits: torch.Tensor | np.ndarray, threshold: float | None) -> np.ndarray:
    """True where the energy is over `threshold` (all False when there is no threshold)."""
    e = energy(logits)
    return e > threshold if threshold is not None else np.zeros(len(e), dtype=bool)
