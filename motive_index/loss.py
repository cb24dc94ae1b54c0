"""The motion-weighted diffusion loss (the paper's masked squared error)."""

from __future__ import annotations

import torch


def motion_weighted_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L = mean_{c,f,h,w} [ W(f,h,w) * (pred - target)^2 ].

    pred, target: (C, F', H', W'); weight: (F', H', W') on the latent grid, broadcast over channels.
    With weight == 1 this is the ordinary flow-matching loss (the unmasked baseline).
    """
    if pred.shape != target.shape or pred.shape[1:] != weight.shape:
        raise ValueError(f"shapes do not match: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"weight {tuple(weight.shape)} (want weight == pred.shape[1:])")
    return (weight[None] * (pred.float() - target.float()) ** 2).mean()
