"""``goggles eval-bag``: translate a recorded camera topic and measure what the bag allows.

No goggles (``none``: the input itself) is always the first entry, then every ``--translator``,
named after its checkpoint (``pretrained:NAME`` -> NAME, else the metadata ``method``, else the
file name; made unique and usable in a ROS topic name).

Frames. Every decodable message of ``--topic`` is one frame, in recorded order. Frames are
evaluated at ``--size`` (default: the first translator's training ``image_size``, else 64),
made square the way bags become training data (:func:`sim2real_goggles.data.bags.square_image`:
centre crop, then an area-filter resize); label masks get the same crop and a nearest-neighbour
resize, so class ids stay ids. A reference (paired sim render) or labels message belongs to the
frame whose header stamp equals its own, else the nearest one within half a frame period (the
median spacing of the camera stamps; exact matches only when there is one frame). A stamp of 0
falls back to the log time. Frames without a partner get no paired metrics.

Metrics (images in grey levels 0-255; the frozen sim segmenter, ``--segmenter``, is the judge):

With ``--labels-topic`` (class ids, mono8):

* ``sem_miou``: mIoU of the segmenter on the translation against the labels, over all paired
  frames (one confusion matrix), with ``per_class_iou`` and the ``target_iou`` called out.

With ``--reference-topic`` (the sim look at the same pose, pixel-aligned with the camera):

* ``psnr`` (dB): 10·log10(255² / MSE) per paired frame, capped at :data:`PSNR_CAP` (identical
  images have none), averaged. ``ssim``: structural similarity (scikit-image), averaged.
* ``flicker`` (grey levels): over consecutive frames that both have a reference,
  mean |(y_t − y_{t−1}) − (r_t − r_{t−1})|: how much the translation's frame-to-frame change
  departs from the sim render's. 0 when the translation moves exactly like the sim world.
* ``fd_seg``: Fréchet distance between the segmenter's pooled bottleneck features of the
  translations of paired frames and of their references (FID-like).

Always (any bag, e.g. a real robot's):

* ``confidence``: mean max-softmax of the segmenter on the translation; ``confident_fraction``:
  fraction of pixels whose max-softmax exceeds 0.9; ``entropy`` (bits, 0-2 for four classes):
  mean per-pixel entropy of the softmax. A sim-like image is one the judge is sure about.
* ``temporal_diff`` (grey levels): mean |y_t − y_{t−1}| over consecutive frames;
  ``flicker_ratio``: that divided by the same for the input, mean |x_t − x_{t−1}|. 1 means the
  translation changes as much as the camera image does; above 1 the goggles add flicker; well
  below 1 they may be freezing or flattening the scene. Undefined for a static input.
* ``shift_err`` (grey levels): mean |G(shift(x)) − shift(G(x))| on the overlap, for random
  integer shifts up to 1/8 of the image, on up to :data:`SHIFT_FRAMES` evenly spaced frames
  (:func:`translation_eval.shift_error`, seed :data:`EVAL_SEED`).
* ``fd_seg`` without a reference topic: against :data:`SIM_REFERENCE_FRAMES` frames rendered in
  the ``sim`` profile from :data:`EVAL_SEED` on (the same rooms as ``goggles eval-translator``).

Speed: translation runs in batches of ``--batch`` after one untimed warm-up batch; a frame's
latency is its batch's time divided by the batch size (``latency_ms`` p50/p95); ``fps`` is frames
over the total translation time. ``read_fps`` is camera frames over the time spent reading and
decoding them alone; ``pipeline_fps`` = frames / (read + translate time), and
``throughput_vs_read`` = pipeline_fps / read_fps (1.0: translating costs nothing next to
reading the bag).

Damage. A bag that does not open (a truncated MCAP has no footer, a truncated sqlite3 file a
wrong page count) is scanned record by record up to the damage; a reader that fails part-way
keeps what it read; undecodable messages are skipped. The report counts skipped messages per
topic against the counts the bag declares (metadata.yaml or the MCAP summary) when it has them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity
from tqdm import tqdm

from sim2real_goggles.data.bag_source import BagSource, open_bag_source
from sim2real_goggles.data.bags import IMAGE_TYPES, BagError, square_image
from sim2real_goggles.data.collect import colorize_mask, iter_frames
from sim2real_goggles.data.image_msgs import ImageMessageError, compressed_msg_to_rgb, image_msg_to_rgb
from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou, rounded
from sim2real_goggles.evaluation.translation_eval import (
    EVAL_SEED,
    frechet_distance,
    segmenter_features,
    shift_error,
)
from sim2real_goggles.models.checkpoint import load_checkpoint
from sim2real_goggles.models.networks import to_tensor
from sim2real_goggles.pretrained import PREFIX, is_pretrained
from sim2real_goggles.translation import Translator

log = logging.getLogger(__name__)

DEFAULT_SIZE = 64
PSNR_CAP = 100.0
"""dB given to a frame identical to its reference (its MSE is 0)."""
CONFIDENT = 0.9
"""Max-softmax above which a pixel counts as confidently classified."""
SHIFT_FRAMES = 64
SIM_REFERENCE_FRAMES = 200
MAX_FRAMES_GRACE_NS = 1_000_000_000
"""With --max-frames, reference and labels messages are still read this long (log time) after
the last evaluated frame, so its partners are found."""
CONTACT_ROWS = 6
LABEL_ENCODINGS = ("mono8", "8UC1")
NONE = "none"


# ----------------------------------------------------------------------------- reading the bag


@dataclass
class TopicStats:
    """What became of one topic's messages."""

    role: str
    msgtype: str
    declared: int | None
    decoded: int = 0
    undecodable: int = 0
    seen: int = 0
    lost: int | None = 0
    """messages the bag declares that were never reached because reading stopped at damage"""
    read_s: float = 0.0

    @property
    def skipped(self) -> int:
        return self.undecodable + (self.lost or 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "type": self.msgtype,
            "declared": self.declared,
            "decoded": self.decoded,
            "undecodable": self.undecodable,
            "lost": self.lost,
            "skipped": self.skipped,
        }


@dataclass
class BagFrames:
    """The evaluated camera frames at the evaluation size, with their paired partners."""

    stamps_ns: np.ndarray
    log_ns: np.ndarray
    frame_ids: list[str]
    images: np.ndarray
    """(N, S, S, 3) uint8"""
    reference: np.ndarray | None = None
    """(N, S, S, 3) uint8; rows without a partner are zeros"""
    has_reference: np.ndarray | None = None
    labels: np.ndarray | None = None
    """(N, S, S) uint8 class ids"""
    has_labels: np.ndarray | None = None
    raw: list[bytes] | None = None
    """the camera messages as recorded (for --write-bag)"""
    tolerance_ns: int = 0
    topics: dict[str, TopicStats] = field(default_factory=dict)
    damage: str | None = None
    salvaged_because: str | None = None


def _stamp_ns(msg: Any, log_ns: int) -> int:
    stamp = getattr(getattr(msg, "header", None), "stamp", None)
    ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec) if stamp is not None else 0
    return ns or log_ns


def label_ids(msg: Any) -> np.ndarray:
    """(H, W) uint8 class ids from a mono8 / 8UC1 sensor_msgs/Image."""
    encoding = str(getattr(msg, "encoding", ""))
    if encoding not in LABEL_ENCODINGS:
        raise ImageMessageError(f"labels must be {' or '.join(LABEL_ENCODINGS)} class ids, not {encoding!r}")
    return image_msg_to_rgb(msg)[..., 0]  # grey -> RGB replicates the ids; step padding handled there


def pair_by_stamp(frame_stamps: np.ndarray, stamps: np.ndarray, tolerance_ns: int) -> np.ndarray:
    """For each frame stamp, the index of the equal stamp in ``stamps``, else of the nearest one
    within ``tolerance_ns``, else -1."""
    frame_stamps = np.asarray(frame_stamps, np.int64)
    stamps = np.asarray(stamps, np.int64)
    out = np.full(len(frame_stamps), -1, np.int64)
    if len(stamps) == 0:
        return out
    order = np.argsort(stamps, kind="stable")
    sorted_stamps = stamps[order]
    right = np.clip(np.searchsorted(sorted_stamps, frame_stamps), 0, len(stamps) - 1)
    left = np.clip(right - 1, 0, len(stamps) - 1)
    d_left = np.abs(sorted_stamps[left] - frame_stamps)
    d_right = np.abs(sorted_stamps[right] - frame_stamps)
    best = np.where(d_right < d_left, right, left)
    distance = np.minimum(d_left, d_right)
    ok = distance <= tolerance_ns
    out[ok] = order[best[ok]]
    return out


def half_period_ns(stamps: np.ndarray) -> int:
    """Half the median spacing of the stamps (0 for fewer than two distinct stamps)."""
    steps = np.diff(np.sort(np.asarray(stamps, np.int64)))
    steps = steps[steps > 0]
    return int(np.median(steps) // 2) if len(steps) else 0


def _check_topics(source: BagSource, topic: str, reference_topic: str | None, labels_topic: str | None) -> None:
    listing = ", ".join(f"{t} ({m})" for t, m in sorted(source.topics.items())) or "none"
    for role, name, holds in (
        ("--reference-topic", reference_topic, "paired sim renders"),
        ("--labels-topic", labels_topic, "class-id masks"),
    ):
        if name is not None and name == topic:
            raise ValueError(f"{role} {name} is the camera topic itself; name the topic that holds the {holds}")
    for role, name, allowed in (
        ("--topic", topic, IMAGE_TYPES),
        ("--reference-topic", reference_topic, IMAGE_TYPES),
        ("--labels-topic", labels_topic, ("sensor_msgs/msg/Image",)),
    ):
        if name is None:
            continue
        if name not in source.topics:
            raise BagError(f"{source.path}: no topic {name!r} ({role}); topics in the bag: {listing}")
        if source.topics[name] not in allowed:
            raise BagError(
                f"{source.path}: {role} {name} carries {source.topics[name]}, which eval-bag cannot read "
                f"(supported: {', '.join(allowed)})"
            )


def read_bag(
    path: Path,
    topic: str,
    size: int,
    reference_topic: str | None = None,
    labels_topic: str | None = None,
    max_frames: int | None = None,
    keep_raw: bool = False,
    progress: bool = True,
) -> BagFrames:
    """Read, decode and square the camera frames and pair their reference and labels messages."""
    source = open_bag_source(path)
    try:
        _check_topics(source, topic, reference_topic, labels_topic)
        roles = {topic: "camera"}
        if reference_topic:
            roles[reference_topic] = "reference"
        if labels_topic:
            roles[labels_topic] = "labels"
        stats = {t: TopicStats(role, source.topics[t], source.declared.get(t)) for t, role in roles.items()}
        camera: list[tuple[int, int, str, np.ndarray]] = []
        raw: list[bytes] = []
        partners: dict[str, list[tuple[int, np.ndarray]]] = {"reference": [], "labels": []}
        damage: str | None = None
        stop_after: int | None = None
        bar = tqdm(total=stats[topic].declared or None, desc="read", unit="frame", disable=not progress)
        it = source.messages(list(roles))
        while True:
            t0 = time.perf_counter()
            try:
                name, log_ns, data = next(it)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - rosbags raises several types part-way through a damaged bag
                damage = f"{type(exc).__name__}: {exc}"
                break
            if stop_after is not None and log_ns > stop_after:
                break
            st, role = stats[name], roles[name]
            if role == "camera" and stop_after is not None:
                continue  # past --max-frames: not evaluated, not skipped
            st.seen += 1
            try:
                msg = source.deserialize(data, st.msgtype)
                if role == "labels":
                    array = square_image(label_ids(msg), size, cv2.INTER_NEAREST)
                elif st.msgtype.endswith("CompressedImage"):
                    array = square_image(compressed_msg_to_rgb(msg), size)
                else:
                    array = square_image(image_msg_to_rgb(msg), size)
            except Exception as exc:  # noqa: BLE001 - one bad message must not end the evaluation
                st.undecodable += 1
                log.warning("%s: message at %d on %s skipped: %s", path, log_ns, name, exc)
                continue
            st.decoded += 1
            st.read_s += time.perf_counter() - t0
            stamp = _stamp_ns(msg, log_ns)
            if role == "camera":
                camera.append((stamp, log_ns, str(getattr(getattr(msg, "header", None), "frame_id", "")), array))
                if keep_raw:
                    raw.append(bytes(data))
                bar.update()
                if max_frames is not None and len(camera) >= max_frames:
                    stop_after = log_ns + MAX_FRAMES_GRACE_NS
            else:
                partners[role].append((stamp, array))
        bar.close()
        if source.damage:
            damage = "; ".join(source.damage)
        if damage is not None:
            for st in stats.values():
                if st.role == "camera" and stop_after is not None:
                    continue  # --max-frames was reached first: the rest was never wanted
                # a declared count below what was seen (MCAP without statistics says 0) is no count
                known = st.declared is not None and st.declared >= st.seen
                st.lost = st.declared - st.seen if known else None
    finally:
        source.close()
    if not camera:
        skipped = stats[topic].skipped
        raise BagError(
            f"{path}: no decodable image on {topic} ({skipped} messages skipped{'; ' + damage if damage else ''})"
        )
    frames = BagFrames(
        stamps_ns=np.array([c[0] for c in camera], np.int64),
        log_ns=np.array([c[1] for c in camera], np.int64),
        frame_ids=[c[2] for c in camera],
        images=np.stack([c[3] for c in camera]),
        raw=raw if keep_raw else None,
        topics=stats,
        damage=damage,
        salvaged_because=source.salvaged_because,
    )
    frames.tolerance_ns = half_period_ns(frames.stamps_ns)
    for role, items in partners.items():
        if (role == "reference" and not reference_topic) or (role == "labels" and not labels_topic):
            continue
        index = pair_by_stamp(frames.stamps_ns, np.array([s for s, _ in items], np.int64), frames.tolerance_ns)
        shape = frames.images.shape if role == "reference" else frames.images.shape[:3]
        paired = np.zeros(shape, np.uint8)
        for i, j in enumerate(index):
            if j >= 0:
                paired[i] = items[j][1]
        if role == "reference":
            frames.reference, frames.has_reference = paired, index >= 0
        else:
            frames.labels, frames.has_labels = paired, index >= 0
    return frames


# ----------------------------------------------------------------------------- translating


class Identity:
    """No goggles: the input itself."""

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.array(images, copy=True)


def translator_name(spec: str, metadata: dict[str, Any], taken: Collection[str]) -> str:
    """``pretrained:NAME`` -> NAME, else the checkpoint's method, else the file stem; made a
    valid ROS name component and unique among ``taken`` (``_2``, ``_3``, ...)."""
    if is_pretrained(spec):
        base = spec[len(PREFIX) :]
    else:
        base = str(metadata.get("method") or Path(spec).stem)
    base = re.sub(r"\W", "_", base).strip("_") or "translator"
    if base[0].isdigit():
        base = f"t_{base}"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


@dataclass
class Timing:
    total_s: float
    per_frame_s: np.ndarray


def translate_timed(
    translate: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int, desc: str, progress: bool
) -> tuple[np.ndarray, Timing]:
    """Translate in batches after one untimed warm-up batch (lazy initialisation, caches)."""
    translate(images[:batch])
    out, per_frame = [], []
    total = 0.0
    with tqdm(total=len(images), desc=desc, unit="frame", disable=not progress) as bar:
        for i in range(0, len(images), batch):
            chunk = images[i : i + batch]
            t0 = time.perf_counter()
            out.append(translate(chunk))
            dt = time.perf_counter() - t0
            total += dt
            per_frame += [dt / len(chunk)] * len(chunk)
            bar.update(len(chunk))
    return np.concatenate(out), Timing(total, np.array(per_frame))


# ----------------------------------------------------------------------------- metrics


@dataclass
class Segmentation:
    pred: np.ndarray
    """(N, H, W) uint8 class ids"""
    confidence: np.ndarray
    """(N,) mean max-softmax per frame"""
    confident_fraction: np.ndarray
    entropy: np.ndarray
    """(N,) mean entropy (bits) per frame"""


@torch.no_grad()
def segment(segmenter: torch.nn.Module, images: np.ndarray, batch: int = 128) -> Segmentation:
    """Predictions and per-frame confidence statistics of the segmenter (on CPU)."""
    segmenter.eval()
    preds, conf, frac, ent = [], [], [], []
    for i in range(0, len(images), batch):
        prob = torch.softmax(segmenter(to_tensor(images[i : i + batch])), dim=1)
        top, pred = prob.max(dim=1)
        entropy = -(prob * torch.log2(prob.clamp_min(1e-12))).sum(dim=1)
        preds.append(pred.to(torch.uint8).numpy())
        conf.append(top.mean(dim=(1, 2)).numpy())
        frac.append((top > CONFIDENT).float().mean(dim=(1, 2)).numpy())
        ent.append(entropy.mean(dim=(1, 2)).numpy())
    return Segmentation(*(np.concatenate(x) for x in (preds, conf, frac, ent)))


def psnr(a: np.ndarray, b: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR in dB of two uint8 images, capped at ``cap`` (identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return cap if mse == 0 else min(cap, 10.0 * np.log10(255.0**2 / mse))


def temporal_diffs(images: np.ndarray) -> np.ndarray:
    """(N-1,) mean |x_t − x_{t−1}| in grey levels."""
    x = images.astype(np.float32)
    return np.abs(np.diff(x, axis=0)).mean(axis=(1, 2, 3))


def reference_flicker(translated: np.ndarray, reference: np.ndarray, paired: np.ndarray) -> np.ndarray:
    """Per consecutive pair (t−1, t) with both references: mean |(y_t − y_{t−1}) − (r_t − r_{t−1})|;
    NaN for pairs without both references."""
    dy = np.diff(translated.astype(np.float32), axis=0)
    dr = np.diff(reference.astype(np.float32), axis=0)
    values = np.abs(dy - dr).mean(axis=(1, 2, 3))
    both = paired[1:] & paired[:-1]
    return np.where(both, values, np.nan)


def frame_miou(pred: np.ndarray, labels: np.ndarray, paired: np.ndarray) -> np.ndarray:
    """(N,) mIoU per frame with labels, NaN elsewhere."""
    return np.array(
        [miou(iou_from_confusion(confusion_matrix(p, t))) if ok else np.nan for p, t, ok in zip(pred, labels, paired)]
    )


def sim_reference_frames(n: int, size: int, seed: int = EVAL_SEED) -> np.ndarray:
    """``n`` frames rendered in the sim profile (episodes from ``seed`` on, every third step)."""
    images: list[np.ndarray] = []
    for frame in iter_frames(["sim"], max(4, n // 4), seed=seed, image_size=size, every=3, max_steps=48):
        images.append(frame.images["sim"])
        if len(images) >= n:
            break
    return np.stack(images)


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def score(
    translated: np.ndarray,
    frames: BagFrames,
    seg: Segmentation,
    features: np.ndarray | None,
    reference_features: np.ndarray | None,
    shift_err: float,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of one entry's translations and its per-frame series (for the plots).
    ``features``/``reference_features``: segmenter features of the translations and of the
    reference set that fd_seg compares (None: no fd_seg)."""
    metrics: dict[str, Any] = {}
    series: dict[str, np.ndarray] = {"confidence": seg.confidence}
    if frames.labels is not None and frames.has_labels is not None and frames.has_labels.any():
        ok = frames.has_labels
        per_class = iou_from_confusion(confusion_matrix(seg.pred[ok], frames.labels[ok]))
        metrics["sem_miou"] = round(miou(per_class), 4)
        metrics["target_iou"] = _r(per_class["target"])
        metrics["per_class_iou"] = rounded(per_class)
        series["miou"] = frame_miou(seg.pred, frames.labels, ok)
    if frames.reference is not None and frames.has_reference is not None and frames.has_reference.any():
        ok = frames.has_reference
        pairs = list(zip(translated[ok], frames.reference[ok]))
        metrics["psnr"] = round(float(np.mean([psnr(t, r) for t, r in pairs])), 3)
        metrics["ssim"] = round(
            float(np.mean([structural_similarity(r, t, channel_axis=-1, data_range=255) for t, r in pairs])), 4
        )
        if len(translated) >= 2:
            flicker = reference_flicker(translated, frames.reference, ok)
            if np.isfinite(flicker).any():
                metrics["flicker"] = round(float(np.nanmean(flicker)), 4)
                series["flicker"] = flicker
    if features is not None and reference_features is not None:
        # >= 0 in exact arithmetic; identical feature sets come out as -1e-12 or so
        metrics["fd_seg"] = round(max(0.0, frechet_distance(features, reference_features)), 4)
    metrics["confidence"] = round(float(seg.confidence.mean()), 4)
    metrics["confident_fraction"] = round(float(seg.confident_fraction.mean()), 4)
    metrics["entropy"] = round(float(seg.entropy.mean()), 4)
    if len(translated) >= 2:
        dy, dx = temporal_diffs(translated), temporal_diffs(frames.images)
        series["temporal_diff"] = dy
        metrics["temporal_diff"] = round(float(dy.mean()), 4)
        metrics["flicker_ratio"] = _r(dy.mean() / dx.mean()) if dx.mean() > 0 else None
    metrics["shift_err"] = round(shift_err, 4)
    return metrics, series


def unavailable_metrics(frames: BagFrames, reference_topic: str | None, labels_topic: str | None) -> dict[str, str]:
    """Metrics this bag does not allow, and why."""
    tol_ms = frames.tolerance_ns / 1e6
    out: dict[str, str] = {}
    if not labels_topic:
        reason = "no --labels-topic (ground-truth class ids) given"
    elif frames.has_labels is None or not frames.has_labels.any():
        reason = f"no labels message on {labels_topic} has a stamp within {tol_ms:.1f} ms of a camera frame"
    else:
        reason = ""
    if reason:
        out.update({k: reason for k in ("sem_miou", "target_iou", "per_class_iou")})
    if not reference_topic:
        reason = "no --reference-topic (paired sim render) given"
    elif frames.has_reference is None or not frames.has_reference.any():
        reason = f"no reference message on {reference_topic} has a stamp within {tol_ms:.1f} ms of a camera frame"
    elif not (frames.has_reference[1:] & frames.has_reference[:-1]).any():
        reason = ""
        out["flicker"] = "no two consecutive frames both have a reference"
    else:
        reason = ""
    if reason:
        out.update({k: reason for k in ("psnr", "ssim", "flicker")})
    if len(frames.images) < 2:
        out.update({k: "needs at least two frames" for k in ("flicker", "temporal_diff", "flicker_ratio")})
    elif temporal_diffs(frames.images).mean() == 0:
        out["flicker_ratio"] = "the input does not change between frames"
    return out


# ----------------------------------------------------------------------------- the command


def _percentile_ms(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000.0, 3)


def _contact_sheet_columns(
    frames: BagFrames, entries: dict[str, np.ndarray], preds: dict[str, np.ndarray], rows: np.ndarray
) -> list[tuple[str, np.ndarray]]:
    columns: list[tuple[str, np.ndarray]] = [("input", frames.images[rows])]
    columns += [(name, images[rows]) for name, images in entries.items() if name != NONE]
    if frames.reference is not None and frames.has_reference is not None:
        ref = frames.reference[rows].copy()
        ref[~frames.has_reference[rows]] = 0
        columns.append(("reference", ref))
    columns += [(f"seg: {name}", colorize_mask(pred[rows])) for name, pred in preds.items()]
    if frames.labels is not None and frames.has_labels is not None:
        gt = colorize_mask(frames.labels[rows])
        gt[~frames.has_labels[rows]] = 0
        columns.append(("ground truth", gt))
    return columns


def evaluate_bag(
    bag: Path,
    topic: str,
    translators: list[str],
    out: Path,
    reference_topic: str | None = None,
    labels_topic: str | None = None,
    write_bag: Path | None = None,
    segmenter_spec: str = "pretrained:segmenter",
    size: int | None = None,
    batch: int = 32,
    device: str = "auto",
    max_frames: int | None = None,
    sim_frames: int = SIM_REFERENCE_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``topic`` of ``bag`` through no goggles and each translator; writes
    ``out/report.json``, ``report.md``, ``report.html`` (and ``write_bag``); returns the report."""
    from sim2real_goggles.evaluation import report as report_mod

    if batch < 1:
        raise ValueError(f"--batch must be at least 1, got {batch}")
    if size is not None and size < 8:
        raise ValueError(f"--size must be at least 8, got {size}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {max_frames}")
    if write_bag is not None and write_bag.exists():
        raise BagError(f"{write_bag}: exists already; --write-bag writes a new bag folder")
    loaded: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str | None, dict[str, Any]]] = {
        NONE: (Identity(), None, {})
    }
    for spec in translators:
        translator = Translator.load(spec, device=device, resize=True)
        loaded[translator_name(spec, translator.metadata, loaded)] = (translator, spec, translator.metadata)
    if size is None:  # the first translator's training size
        first = next((meta for _, spec, meta in loaded.values() if spec is not None), {})
        size = int(first.get("image_size") or DEFAULT_SIZE)
    segmenter = load_checkpoint(segmenter_spec).build("cpu")

    frames = read_bag(bag, topic, size, reference_topic, labels_topic, max_frames, write_bag is not None, progress)
    n = len(frames.images)
    cam = frames.topics[topic]
    read_fps = n / cam.read_s if cam.read_s > 0 else None
    warnings: list[str] = []
    if frames.salvaged_because:
        warnings.append(f"{bag}: the regular reader failed ({frames.salvaged_because}); salvaged record by record")
    if frames.damage:
        lost = "an unknown number of" if cam.lost is None else str(cam.lost)
        warnings.append(
            f"{bag}: damaged, evaluated up to the damage ({frames.damage}): {n} frames evaluated, "
            f"{lost} messages on {topic} lost"
        )
    for name, st in frames.topics.items():
        if st.undecodable:
            warnings.append(f"{bag}: {st.undecodable} messages on {name} did not decode and were skipped")
    for w in warnings:
        log.warning("%s", w)

    unavailable = unavailable_metrics(frames, reference_topic, labels_topic)
    # fd_seg compares translations of paired frames with their references, or (no reference)
    # translations of every frame with frames rendered in the sim profile.
    paired_ref = frames.has_reference if frames.has_reference is not None else np.zeros(n, bool)
    reference_features: np.ndarray | None = None
    if paired_ref.sum() >= 2 and frames.reference is not None:
        reference_features, fd_rows = segmenter_features(segmenter, frames.reference[paired_ref]), paired_ref
        fd_source = f"reference topic {reference_topic} ({int(paired_ref.sum())} paired frames)"
    elif sim_frames >= 2:
        reference_features, fd_rows = (
            segmenter_features(segmenter, sim_reference_frames(sim_frames, size)),
            np.ones(n, bool),
        )
        fd_source = f"{sim_frames} frames rendered in the sim profile from seed {EVAL_SEED}"
    else:
        fd_rows, fd_source = np.zeros(n, bool), None
        unavailable["fd_seg"] = "fewer than two reference frames"

    shift_rows = np.unique(np.linspace(0, n - 1, min(n, SHIFT_FRAMES)).round().astype(int))
    entries: dict[str, dict[str, Any]] = {}
    translations: dict[str, np.ndarray] = {}
    preds: dict[str, np.ndarray] = {}
    series: dict[str, dict[str, np.ndarray]] = {}
    for name, (translate, spec, metadata) in loaded.items():
        if name == NONE:
            translated, timing = frames.images, None
        else:
            translated, timing = translate_timed(translate, frames.images, batch, f"translate {name}", progress)
        seg = segment(segmenter, translated)
        metrics, per_frame = score(
            translated,
            frames,
            seg,
            segmenter_features(segmenter, translated[fd_rows]) if reference_features is not None else None,
            reference_features,
            shift_error(translate, frames.images[shift_rows], EVAL_SEED),  # type: ignore[arg-type]
        )
        entry: dict[str, Any] = {
            "checkpoint": spec,
            "method": metadata.get("method") if spec else None,
            **metrics,
            "frames": n,
            "fps": None,
            "latency_ms": None,
            "pipeline_fps": None,
            "throughput_vs_read": None,
        }
        if timing is not None:
            fps = n / timing.total_s if timing.total_s > 0 else None
            pipeline = n / (timing.total_s + cam.read_s)
            entry.update(
                fps=_r(fps, 2),
                latency_ms={
                    "p50": _percentile_ms(timing.per_frame_s, 50),
                    "p95": _percentile_ms(timing.per_frame_s, 95),
                },
                pipeline_fps=round(pipeline, 2),
                throughput_vs_read=_r(pipeline / read_fps, 4) if read_fps else None,
            )
        entries[name], translations[name], preds[name], series[name] = entry, translated, seg.pred, per_frame

    report: dict[str, Any] = {
        "bag": str(bag),
        "topic": topic,
        "reference_topic": reference_topic,
        "labels_topic": labels_topic,
        "frames": n,
        "size": size,
        "skipped": cam.skipped,
        "damage": frames.damage,
        "warnings": warnings,
        "topics": {t: st.as_dict() for t, st in frames.topics.items()},
        "paired": {
            "reference": None if frames.has_reference is None else int(frames.has_reference.sum()),
            "labels": None if frames.has_labels is None else int(frames.has_labels.sum()),
            "tolerance_ms": round(frames.tolerance_ns / 1e6, 3),
        },
        "read_s": round(cam.read_s, 4),
        "read_fps": _r(read_fps, 2),
        "segmenter": segmenter_spec,
        "device": str(next((t.device for t, _, _ in loaded.values() if isinstance(t, Translator)), "cpu")),
        "batch": batch,
        "fd_seg_reference": fd_source,
        "metrics_unavailable": unavailable,
        "write_bag": None if write_bag is None else str(write_bag),
        "translators": entries,
    }
    if write_bag is not None:
        _write_translated_bag(write_bag, topic, cam.msgtype, frames, translations)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    duration = frames.stamps_ns - frames.stamps_ns[0]
    rows = np.unique(np.linspace(0, n - 1, min(n, CONTACT_ROWS)).round().astype(int))
    report_mod.write_reports(
        out,
        report,
        time_s=duration / 1e9,
        series=series,
        contact_columns=_contact_sheet_columns(frames, translations, preds, rows),
        contact_rows=[f"frame {i}\n{duration[i] / 1e9:.2f} s" for i in rows],
    )
    return report


def _write_translated_bag(
    path: Path, topic: str, msgtype: str, frames: BagFrames, translations: dict[str, np.ndarray]
) -> None:
    """The input topic as recorded plus ``/goggles/<name>/image`` per translator (MCAP), with the
    original log times and header stamps."""
    from sim2real_goggles.data.bag_writer import BagWriter

    assert frames.raw is not None
    with BagWriter(path, storage="mcap") as writer:
        writer.add_topic(topic, msgtype)
        names = [n for n in translations if n != NONE]
        for name in names:
            writer.add_topic(f"/goggles/{name}/image", "sensor_msgs/msg/Image")
        for i, data in enumerate(frames.raw):
            log_ns = int(frames.log_ns[i])
            writer.write_raw(topic, log_ns, data)
            for name in names:
                writer.write_image(
                    f"/goggles/{name}/image",
                    log_ns,
                    translations[name][i],
                    frame_id=frames.frame_ids[i] or "camera",
                    stamp_ns=int(frames.stamps_ns[i]),
                )


def _summary_line(name: str, entry: dict[str, Any]) -> str:
    keys = ("sem_miou", "target_iou", "psnr", "ssim", "fd_seg", "flicker", "flicker_ratio", "confidence", "shift_err")
    parts = [f"{k} {entry[k]}" for k in keys if entry.get(k) is not None]
    if entry.get("fps") is not None:
        parts.append(f"{entry['fps']} fps (p95 {entry['latency_ms']['p95']} ms/frame)")
    return f"{name:>12}: " + ", ".join(parts)


def eval_bag_main(args: argparse.Namespace) -> int:
    """``goggles eval-bag``: see the module docstring and ``goggles eval-bag --help``."""
    report = evaluate_bag(
        bag=args.bag,
        topic=args.topic,
        translators=list(args.translator),
        out=args.out,
        reference_topic=args.reference_topic,
        labels_topic=args.labels_topic,
        write_bag=args.write_bag,
        segmenter_spec=args.segmenter,
        size=args.size,
        batch=args.batch,
        device=args.device,
        max_frames=args.max_frames,
    )
    if args.json:
        print((args.out / "report.json").read_text(), end="")
        return 0
    print(f"{report['frames']} frames of {report['topic']} at {report['size']}x{report['size']}", end="")
    print(f", read at {report['read_fps']} fps, {report['skipped']} skipped")
    for name, entry in report["translators"].items():
        print(_summary_line(name, entry))
    wrote = ", ".join(str(args.out / f) for f in ("report.json", "report.md", "report.html"))
    print(f"wrote {wrote}" + (f" and {args.write_bag}" if args.write_bag else ""))
    return 0


__all__ = [
    "BagFrames",
    "evaluate_bag",
    "eval_bag_main",
    "label_ids",
    "pair_by_stamp",
    "psnr",
    "read_bag",
    "reference_flicker",
    "temporal_diffs",
    "translator_name",
]
