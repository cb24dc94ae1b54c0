"""The motion-weighted diffusion losses whose gradients are attributed.

``mse`` (the paper's): the masked squared error of the model's prediction.
``td`` (temporal difference): the masked squared error of the frame-to-frame differences of the residual
``model - target``; an error that is the same in every latent frame (static appearance) cancels, so the
gradient carries what changes over time.
"""

from __future__ import annotations

import torch

from .config import LOSS_KINDS as LOSSES


def _check(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1:] != weight.shape:
        raise ValueError(f"shapes do not match: pred {tuple(pred.shape)}, target {tuple(target.shape)}, "
                         f"weight {tuple(weight.shape)} (want pred (C, F', H', W') and weight == pred.shape[1:])")


def motion_weighted_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L = mean_{c,f,h,w} [ W(f,h,w) * (pred - target)^2 ].

    pred, target: (C, F', H', W'); weight: (F', H', W') on the latent grid, broadcast over channels.
    With weight == 1 this is the ordinary flow-matching loss (the unmasked baseline).
    """
    _check(pred, target, weight)
    return (weight[None] * (pred.float() - target.float()) ** 2).mean()


def temporal_difference_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """L = mean_{c,f,h,w} [ W'(f,h,w) * (r(f+1) - r(f))^2 ],  r = pred - target,  W' = (W(f) + W(f+1)) / 2.

    pred, target: (C, F', H', W') with F' >= 2; weight: (F', H', W'). The weight of a frame pair is the mean of
    its two frames' weights.
    """
    _check(pred, target, weight)
    if pred.shape[1] < 2:
        raise ValueError(f"the temporal-difference loss needs at least 2 latent frames, got {pred.shape[1]}")
    r = pred.float() - target.float()                  # (C, F', H', W')
    dr = r[:, 1:] - r[:, :-1]                          # (C, F'-1, H', W')
    w = 0.5 * (weight[1:] + weight[:-1])               # (F'-1, H', W')
    return (w[None] * dr ** 2).mean()


def weighted_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The loss named ``kind`` (one of :data:`LOSSES`)."""
    if kind == "mse":
        return motion_weighted_loss(pred, target, weight)
    if kind == "td":
        return temporal_difference_loss(pred, target, weight)
    raise ValueError(f"loss={kind!r} is invalid: one of {LOSSES}")
