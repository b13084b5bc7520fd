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
