"""Building blocks of the feature- and output-level adaptation baselines (DESIGN §1, issue 9).

* DANN (Ganin & Lempitsky, ICML 2015, https://arxiv.org/abs/1409.7495): a domain classifier
  reads the task network's features through a **gradient-reversal layer**: identity forward,
  gradient multiplied by ``-scale`` backward, so the features learn to confuse the classifier
  while it learns to tell sim from real. ``scale`` follows the paper's ramp
  ``2 / (1 + exp(-10 p)) - 1`` over training progress ``p``.
* ADVENT (Vu et al., CVPR 2019, https://arxiv.org/abs/1811.12833): on unlabelled real images,
  (a) the **direct entropy loss** (MinEnt): the mean per-pixel entropy of the softmax, normalised
  by log(C) to [0, 1], and (b) the **adversarial loss on weighted self-information maps**
  ``I = -P * log P`` (C channels per pixel): a fully convolutional discriminator tells sim maps
  from real maps, and the segmenter is trained to make its real maps look like sim ones.
* Masked reconstruction (the foreground/background losses used for synthetic retail imagery):
  an L1 loss averaged separately inside and outside an object mask, each part with its own
  weight, so a chair of a few dozen pixels weighs as much as the floor around it
  (:func:`masked_l1`; used by ``train-translator --method cyclegan --mask-loss``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad.neg() * ctx.scale, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity on the forward pass; the gradient is multiplied by ``-scale`` on the way back."""
    return _GradientReversal.apply(x, float(scale))


def dann_scale(progress: float) -> float:
    """DANN's gradient-reversal schedule: 0 at the start, towards 1 at the end of training."""
    return 2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0


class DomainClassifier(nn.Module):
    """Fully convolutional sim/real classifier: one logit per location (positive = real).

    :param channels: channels of its input (features, or the C maps of ADVENT's self-information).
    :param width: channels of the first convolution (doubled per stride-2 stage).
    :param stages: stride-2 stages (each halves the resolution).
    """

    def __init__(self, channels: int, width: int = 32, stages: int = 3):
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        for i in range(stages):
            cout = width * 2**i
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def domain_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy of a domain classifier's logits against one domain label."""
    target = torch.full_like(logits, 1.0 if real else 0.0)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def self_information(logits: torch.Tensor) -> torch.Tensor:
    """ADVENT's weighted self-information maps ``-P * log P`` (N, C, H, W), normalised by log(C)
    so that their sum over classes is the entropy in [0, 1]."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p) / math.log(logits.shape[1])


def entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel normalised entropy of the softmax: 0 for one-hot predictions, 1 for uniform."""
    return self_information(logits).sum(dim=1).mean()


def masked_l1(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, inside: float, outside: float
) -> torch.Tensor:
    """``inside * mean|p - t| over the mask + outside * mean|p - t| outside it``.

    ``mask``: (N, H, W) or (N, 1, H, W) booleans (True = object). Each mean is over the pixels
    (and channels) of its own region in the whole batch; a region with no pixel contributes 0.
    With ``inside == outside == 1`` and a mask covering half of the pixels this is twice the
    plain L1; the point is that a small object weighs as much as the large background.
    """
    if mask.dim() == 3:
        mask = mask[:, None]
    m = mask.to(prediction.dtype).expand_as(prediction)
    err = (prediction - target).abs()
    loss = prediction.sum() * 0.0
    n_in = m.sum()
    n_out = m.numel() - n_in
    if inside and n_in > 0:
        loss = loss + inside * (err * m).sum() / n_in
    if outside and n_out > 0:
        loss = loss + outside * (err * (1 - m)).sum() / n_out
    return loss


__all__ = [
    "DomainClassifier",
    "dann_scale",
    "domain_loss",
    "entropy_loss",
    "grad_reverse",
    "masked_l1",
    "self_information",
]
