"""Segmentation metrics: confusion matrix, per-class IoU and mIoU (``sem_miou``)."""

from __future__ import annotations

import numpy as np

from sim2real_goggles.appearance.profile import CLASS_NAMES, IGNORE_ID


def confusion_matrix(pred: np.ndarray, target: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """``cm[t, p]`` counts pixels of true class t predicted as p; ``IGNORE_ID`` pixels skipped."""
    pred = np.asarray(pred).ravel().astype(np.int64)
    target = np.asarray(target).ravel().astype(np.int64)
    keep = target != IGNORE_ID
    idx = target[keep] * num_classes + pred[keep]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(cm: np.ndarray) -> dict[str, float | None]:
    """Per-class IoU (None for a class absent from both truth and prediction)."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    return {name: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, name in enumerate(CLASS_NAMES)}


def miou(per_class: dict[str, float | None]) -> float:
    """Mean IoU over the classes that occur."""
    values = [v for v in per_class.values() if v is not None]
    return float(np.mean(values)) if values else 0.0


def rounded(per_class: dict[str, float | None], digits: int = 4) -> dict[str, float | None]:
    """Per-class IoU rounded for reports (None stays None)."""
    return {k: (None if v is None else round(v, digits)) for k, v in per_class.items()}


def miou_interval(
    confusions: np.ndarray, groups: np.ndarray, resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Bootstrap interval of the mIoU over ``groups`` (e.g. rooms) of frames.

    ``confusions`` holds one confusion matrix per frame (N, C, C) and ``groups`` each frame's
    group label (N,). Frames of one room are alike, so the room, not the frame, is the unit that
    is drawn: each of ``resamples`` draws takes as many rooms as there are, with replacement, and
    scores the mIoU of their summed confusion. Returns the central ``level`` interval of those
    scores (percentiles); with one room both ends are its mIoU."""
    confusions = np.asarray(confusions, dtype=np.float64)
    groups = np.asarray(groups)
    if confusions.ndim != 3 or len(confusions) != len(groups) or len(groups) == 0:
        raise ValueError(f"need one confusion matrix (C, C) per group label, got {confusions.shape} and {groups.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    labels, index = np.unique(groups, return_inverse=True)
    per_group = np.zeros((len(labels),) + confusions.shape[1:])
    np.add.at(per_group, index, confusions)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(labels), np.full(len(labels), 1.0 / len(labels)), size=resamples)
    scores = [miou(iou_from_confusion(cm)) for cm in np.einsum("rg,gij->rij", counts, per_group)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(scores, [tail, 1.0 - tail])
    return float(low), float(high)
