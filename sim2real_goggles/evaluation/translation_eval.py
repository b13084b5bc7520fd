"""Translation quality on paired, held-apart frames (DESIGN §8).

For a real-like look R and a translator G (real -> sim), frames are rendered at the same poses in
R, in ``sim``, and in ``sim`` seen through R's camera model (same lens, so pixel-aligned with R):

* ``sem_miou``: the frozen sim segmenter on G(x_R) against R's ground-truth mask (the "FCN
  score"), with per-class IoU and ``sem_miou_ci95``, a 95% bootstrap interval over the
  ``rooms`` the frames come from (:func:`~sim2real_goggles.evaluation.metrics.miou_interval`;
  frames of one room are alike, and 500 frames are about 32 rooms: the interval spans
  0.04-0.07 there, and other sets of rooms have moved figures by more, README "How far 500
  frames carry"); ``sem_miou_no_goggles``: the same on x_R untranslated;
  ``sem_miou_sim``: on true sim frames against their masks (the upper bound);
  ``sem_miou_ref``: on the sim look through R's camera against R's mask, what a perfect
  translation would score (below ``sem_miou_sim`` by what R's lens alone costs the segmenter).
* ``psnr``, ``ssim``: G(x_R) against the sim look through R's camera.
* ``fd_seg``: Fréchet distance between the segmenter's pooled bottleneck features of G(x_R)
  and of true sim frames (FID-like; Inception weights cannot be downloaded here).
* ``shift_err``: mean |G(shift(x)) - shift(G(x))| on the overlap, in grey levels (0-255), for
  random integer shifts of up to 1/8 of the image.

G runs as the :class:`~sim2real_goggles.translation.Translator` runs it, at the
``input_scale`` its checkpoint records (reported; 1 for most translators).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sim2real_goggles.appearance.profile import load_profile, sim_through_camera
from sim2real_goggles.data.collect import colorize_mask, iter_frames
from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou, miou_interval, rounded
from sim2real_goggles.models.checkpoint import load_checkpoint
from sim2real_goggles.models.networks import to_tensor
from sim2real_goggles.training.segmenter import predict
from sim2real_goggles.translation import Translator

EVAL_SEED = 200_000
"""Evaluation rooms start here, far from any training seed."""


def paired_frames(real: str, sim: str, n: int, seed: int, size: int) -> dict[str, np.ndarray]:
    real_p, sim_p = load_profile(real), load_profile(sim)
    ref_p = sim_through_camera(sim_p, real_p)
    keys = {"real": real_p.name, "sim": sim_p.name, "ref": ref_p.name}
    out: dict[str, list[Any]] = {k: [] for k in ("real", "sim", "ref", "mask_real", "mask_sim", "room")}
    episodes = max(1, n // 16)
    for frame in iter_frames([real_p, sim_p, ref_p], episodes * 4, seed=seed, image_size=size, every=3, max_steps=48):
        out["real"].append(frame.images[keys["real"]])
        out["sim"].append(frame.images[keys["sim"]])
        out["ref"].append(frame.images[keys["ref"]])
        out["mask_real"].append(frame.masks[keys["real"]])
        out["mask_sim"].append(frame.masks[keys["sim"]])
        out["room"].append(frame.seed)
        if len(out["real"]) >= n:
            break
    return {k: np.stack(v) for k, v in out.items()}


@torch.no_grad()
def segmenter_features(segmenter: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """Pooled bottleneck features (N, C) of the segmenter, for fd_seg."""
    segmenter.eval()
    feats = [
        segmenter.features(to_tensor(images[i : i + 128])).mean(dim=(2, 3)).numpy() for i in range(0, len(images), 128)
    ]
    return np.concatenate(feats).astype(np.float64)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (as in FID)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr(sqrt(A B)) is the sum of the square roots of the eigenvalues of A B (real and >= 0 for
    # covariance matrices), which stays stable when few samples make A or B singular.
    eig = np.linalg.eigvals(cov_a @ cov_b)
    tr_covmean = float(np.sqrt(np.clip(eig.real, 0.0, None)).sum())
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_covmean)


def shift_error(translator: Translator, images: np.ndarray, seed: int, fraction: float = 0.125) -> float:
    rng = np.random.default_rng(seed)
    h, w = images.shape[1:3]
    m = max(1, int(min(h, w) * fraction))
    errors = []
    base = translator(images).astype(np.float64)
    for i, img in enumerate(images):
        dy, dx = (int(v) for v in rng.integers(-m, m + 1, size=2))
        shifted = np.roll(img, (dy, dx), axis=(0, 1))
        out = translator(shifted).astype(np.float64)
        ys, ye, xs, xe = max(dy, 0), h + min(dy, 0), max(dx, 0), w + min(dx, 0)
        errors.append(np.abs(out[ys:ye, xs:xe] - base[i, ys - dy : ye - dy, xs - dx : xe - dx]).mean())
    return float(np.mean(errors))


def _scores(
    segmenter: torch.nn.Module, images: np.ndarray, masks: np.ndarray, features: bool = True
) -> tuple[float, dict[str, float | None], np.ndarray | None, np.ndarray]:
    """mIoU and per-class IoU of the segmenter on ``images``; its pooled features when asked;
    the confusion matrix of each frame (N, C, C), whose sum gives the scores."""
    pred = predict(segmenter, images)
    frames = np.stack([confusion_matrix(p, m) for p, m in zip(pred, masks)])
    per_class = iou_from_confusion(frames.sum(0))
    return miou(per_class), per_class, segmenter_features(segmenter, images) if features else None, frames


def _setup(
    translator_path: str | Path,
    segmenter_path: str | Path,
    real: str,
    sim: str,
    n: int,
    seed: int,
    image_size: int | None,
    backend: str = "eager",
    input_scale: float | None = None,
) -> tuple[Translator, torch.nn.Module, int, dict[str, np.ndarray]]:
    translator = Translator.load(translator_path, device="cpu", backend=backend, input_scale=input_scale)
    segmenter = load_checkpoint(segmenter_path).build("cpu")
    size = image_size or int(translator.metadata.get("image_size", 64))
    return translator, segmenter, size, paired_frames(real, sim, n, seed, size)


def _write_grid(rows: list[np.ndarray], path: str | Path) -> None:
    """Rows of RGB images stacked vertically, shown 2x (nearest neighbour), as a PNG."""
    grid = cv2.resize(np.concatenate(rows, axis=0), None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def _translate_all(translator: Translator, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([translator(images[i : i + batch]) for i in range(0, len(images), batch)])


def evaluate_translator(
    translator_path: str | Path,
    segmenter_path: str | Path,
    real: str = "real_lab",
    sim: str = "sim",
    n: int = 500,
    seed: int = EVAL_SEED,
    image_size: int | None = None,
    grid_path: str | Path | None = None,
    backend: str = "eager",
    input_scale: float | None = None,
) -> dict[str, Any]:
    """Quality of a real -> sim translator on ``n`` paired frames of held-apart rooms, run with
    inference ``backend`` (:mod:`sim2real_goggles.inference`), so a fast runtime's quality is
    measured, not assumed, and at ``input_scale`` (None: the checkpoint's)."""
    translator, segmenter, size, data = _setup(
        translator_path, segmenter_path, real, sim, n, seed, image_size, backend, input_scale
    )
    translated = _translate_all(translator, data["real"])
    sem, per_class, f_trans, frame_cm = _scores(segmenter, translated, data["mask_real"])
    sem_none, per_class_none, _, _ = _scores(segmenter, data["real"], data["mask_real"], features=False)
    sem_sim, per_class_sim, f_sim, _ = _scores(segmenter, data["sim"], data["mask_sim"])
    sem_ref, per_class_ref, _, _ = _scores(segmenter, data["ref"], data["mask_real"], features=False)
    ci_low, ci_high = miou_interval(frame_cm, data["room"], seed=seed)
    psnr = np.mean([peak_signal_noise_ratio(r, t, data_range=255) for r, t in zip(data["ref"], translated)])
    ssim = np.mean(
        [structural_similarity(r, t, channel_axis=-1, data_range=255) for r, t in zip(data["ref"], translated)]
    )
    report = {
        "translator": str(translator_path),
        "method": translator.metadata.get("method"),
        "backend": backend,
        "real": load_profile(real).name,
        "sim": load_profile(sim).name,
        "n": int(len(translated)),
        "image_size": size,
        "input_scale": translator.input_scale,
        "rooms": int(len(np.unique(data["room"]))),
        "sem_miou": round(sem, 4),
        "sem_miou_ci95": [round(ci_low, 4), round(ci_high, 4)],
        "sem_miou_no_goggles": round(sem_none, 4),
        "sem_miou_sim": round(sem_sim, 4),
        "sem_miou_ref": round(sem_ref, 4),
        "target_iou": None if per_class["target"] is None else round(per_class["target"], 4),
        "per_class_iou": rounded(per_class),
        "per_class_iou_no_goggles": rounded(per_class_none),
        "per_class_iou_sim": rounded(per_class_sim),
        "per_class_iou_ref": rounded(per_class_ref),
        "psnr": round(float(psnr), 3),
        "ssim": round(float(ssim), 4),
        "fd_seg": round(frechet_distance(f_trans, f_sim), 4),
        "shift_err": round(shift_error(translator, data["real"][:64], seed), 4),
    }
    if grid_path is not None:
        pred = predict(segmenter, translated[:8])
        rows = [
            np.concatenate(
                [
                    data["real"][i],
                    translated[i],
                    data["ref"][i],
                    colorize_mask(pred[i]),
                    colorize_mask(data["mask_real"][i]),
                ],
                axis=1,
            )
            for i in range(min(8, len(translated)))
        ]
        _write_grid(rows, grid_path)
    return report


def evaluate_refiner(
    refiner_path: str | Path,
    segmenter_path: str | Path,
    real: str = "real_lab",
    sim: str = "sim",
    n: int = 500,
    seed: int = EVAL_SEED,
    image_size: int | None = None,
    grid_path: str | Path | None = None,
) -> dict[str, Any]:
    """Quality of a sim -> real refiner (SimGAN): R(x_sim) against the paired real frame.

    The input is the sim look through the real camera (pixel-aligned with the real frame), so
    ``psnr``/``ssim`` measure how close refinement brings a sim frame to the real one, against
    ``*_identity`` (the unrefined frame); ``fd_seg`` is the Fréchet distance to real frames in the
    segmenter's feature space, refined and unrefined.
    """
    refiner, segmenter, size, data = _setup(refiner_path, segmenter_path, real, sim, n, seed, image_size)
    source, target = data["ref"], data["real"]
    refined = _translate_all(refiner, source)

    def pixel_scores(images: np.ndarray) -> tuple[float, float]:
        psnr = np.mean([peak_signal_noise_ratio(t, x, data_range=255) for t, x in zip(target, images)])
        ssim = np.mean([structural_similarity(t, x, channel_axis=-1, data_range=255) for t, x in zip(target, images)])
        return float(psnr), float(ssim)

    psnr, ssim = pixel_scores(refined)
    psnr_id, ssim_id = pixel_scores(source)
    f_real = segmenter_features(segmenter, target)
    report = {
        "translator": str(refiner_path),
        "method": refiner.metadata.get("method"),
        "direction": "sim->real",
        "real": load_profile(real).name,
        "sim": load_profile(sim).name,
        "n": int(len(refined)),
        "image_size": size,
        "psnr": round(psnr, 3),
        "ssim": round(ssim, 4),
        "psnr_identity": round(psnr_id, 3),
        "ssim_identity": round(ssim_id, 4),
        "fd_seg": round(frechet_distance(segmenter_features(segmenter, refined), f_real), 4),
        "fd_seg_identity": round(frechet_distance(segmenter_features(segmenter, source), f_real), 4),
        "shift_err": round(shift_error(refiner, source[:64], seed), 4),
    }
    if grid_path is not None:
        rows = [np.concatenate([source[i], refined[i], target[i]], axis=1) for i in range(min(8, len(refined)))]
        _write_grid(rows, grid_path)
    return report
