"""Global magnitude (L1) pruning of a network's conv/linear weights, with masks held through a fine-tune
and then made permanent; `sparsity` says how many weights ended at zero."""

from __future__ import annotations

from torch import nn

from vistune.models.device_policy import to_memory_format


def sparsity(model: nn.Module) -> float:
    ws = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    total = sum(w.numel() for w in ws)
    return float(sum((w == 0).sum().item() for w in ws) / max(total, 1))


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def magnitude_prune(model: nn.Module, amount: float) -> None:
    """Zero the `amount` fraction of smallest-magnitude conv/linear weights across the network.

    Masks stay attached (torch.nn.utils.prune) so a fine-tune keeps pruned weights at zero;
    call `make_permanent` afterwards.
    """
    from torch.nn.utils import prune

    to_memory_format(model, channels_last=False)  # global pruning flattens weights with .view(-1)
    prune.global_unstructured(prunable(model), pruning_method=prune.L1Unstructured, amount=amount)


def make_permanent(model: nn.Module) -> None:
    from torch.nn.utils import prune

    for module, name in prunable(model):
        if prune.is_pruned(module):
            prune.remove(module, name)
