"""Translator runtime: load a generator checkpoint and translate uint8 camera images.

``Translator.load(path)`` picks the device (``auto``: CUDA when present, else CPU) and the
precision (fp16 by default on CUDA, fp32 on CPU). A call takes one image (H, W, 3) or a batch
(N, H, W, 3) of uint8 RGB and returns the same shape. Any size works: the generators need sides
that are multiples of 4 (and at least 8), so inputs are reflect-padded at the bottom and right
up to the next valid size and the output is cropped back (no resizing, so pixels stay aligned
with the input, unless the checkpoint records an ``input_scale``, see :meth:`Translator.__call__`).
Greyscale (H, W) or (H, W, 1)
images are replicated to three channels; RGBA drops alpha. ``backend`` picks the runtime
(eager PyTorch by default; ONNX Runtime, TorchScript, torch.compile, channels-last, CUDA graphs:
:mod:`sim2real_goggles.inference`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sim2real_goggles.inference import make_runner
from sim2real_goggles.models.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from sim2real_goggles.models.networks import SIZE_MULTIPLE

GENERATOR_ARCHS = ("resnet9", "compact", "pixelda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is available")
    return dev


def as_rgb_batch(images: np.ndarray) -> tuple[np.ndarray, bool]:
    """(N, H, W, 3) uint8 and whether the input was a single image."""
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {arr.dtype}")
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        arr = arr[..., None]  # (H, W) greyscale or (N, H, W) greyscale batch
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"expected (H, W, 3) or (N, H, W, 3) images, got shape {np.asarray(images).shape}")
    channels = arr.shape[-1]
    if channels == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif channels == 4:
        arr = arr[..., :3]
    elif channels != 3:
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"empty image of shape {np.asarray(images).shape}")
    return np.ascontiguousarray(arr), single


MIN_SIDE = 8
"""Smallest side fed to a generator: after two 2x down-samplings, 2 pixels remain for the
reflection padding of the residual blocks."""


def _padded(side: int) -> int:
    return max(MIN_SIDE, -(-side // SIZE_MULTIPLE) * SIZE_MULTIPLE)


def _scaled(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``size`` (width, height): area filter when it shrinks, bilinear when
    it grows."""
    shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class Translator:
    """A generator ready for inference on uint8 images."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        device: str | torch.device = "auto",
        half: bool | None = None,
        resize: bool = False,
        backend: str = "eager",
        threads: int | None = None,
        input_scale: float | None = None,
    ):
        if checkpoint.arch not in GENERATOR_ARCHS:
            raise CheckpointError(
                f"{checkpoint.path}: holds a {checkpoint.arch!r} network, not a translator ({', '.join(GENERATOR_ARCHS)})"
            )
        self.checkpoint = checkpoint
        self.device = resolve_device(device)
        self.half = (self.device.type == "cuda") if half is None else bool(half)
        if self.half and self.device.type != "cuda":
            raise ValueError("fp16 inference needs a CUDA device")
        self.model = checkpoint.build(self.device)
        self.backend = backend
        self.runner = make_runner(self.model, backend, self.device, half=self.half, threads=threads)
        self.metadata = checkpoint.metadata
        self.resize = resize
        self.image_size = int(self.metadata.get("image_size") or 0)
        self.input_scale = float(self.metadata.get("input_scale", 1.0) if input_scale is None else input_scale)
        if not 0.0 < self.input_scale <= 8.0:
            raise ValueError(f"{checkpoint.path}: input_scale must be in (0, 8], got {self.input_scale}")

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        half: bool | None = None,
        resize: bool = False,
        backend: str = "eager",
        threads: int | None = None,
        input_scale: float | None = None,
    ) -> Translator:
        """``path``: a checkpoint file or ``pretrained:NAME``. ``resize`` and ``input_scale``
        (None: the checkpoint's ``input_scale`` metadata, else 1): see :meth:`__call__`.
        ``backend``: see :mod:`sim2real_goggles.inference` (all compute the same translation)."""
        return cls(
            load_checkpoint(path),
            device=device,
            half=half,
            resize=resize,
            backend=backend,
            threads=threads,
            input_scale=input_scale,
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Translate uint8 (H, W, 3) or (N, H, W, 3) images (greyscale and RGBA are converted,
        see :func:`as_rgb_batch`) to the same shape.

        Any size works: the input is reflection-padded to a multiple of 4 (at least 8) and the
        output cropped back. A generator sees pixels at the scale it was trained on, so with
        ``resize=True`` the images are first scaled so their shorter side is the training
        ``image_size``, then the output is scaled back to the input size: use it for camera
        images larger than the training images. ``input_scale`` s != 1 (a checkpoint records it
        when its generator was measured to translate better on enlarged frames, e.g. the shipped
        self-distilled goggles, s 1.5) scales the frame by s on top of that, so the generator
        runs on s^2 times the pixels. Shrinking uses the area filter, enlarging is bilinear.
        """
        batch, single = as_rgb_batch(images)
        h, w = batch.shape[1:3]
        side = self.image_size if self.resize and self.image_size else min(h, w)
        scale = side * self.input_scale / min(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size == (w, h):
            result = self._translate(batch)
        else:
            out = self._translate(np.stack([_scaled(im, size) for im in batch]))
            result = np.stack([_scaled(im, (w, h)) for im in out])
        return result[0] if single else result

    @torch.inference_mode()
    def _translate(self, batch: np.ndarray) -> np.ndarray:
        h, w = batch.shape[1:3]
        # frames decoded straight from a message buffer are read-only; torch wants to own them
        batch = batch if batch.flags.writeable else batch.copy()
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).contiguous()
        x = x.half() if self.half else x.float()
        x = x.div_(127.5).sub_(1.0)
        ph, pw = _padded(h) - h, _padded(w) - w
        if ph or pw:
            # Reflection needs the pad to be smaller than the side; replicate covers tiny images.
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = self.runner(x)[:, :, :h, :w]
        out = y.float().add_(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)
        return out.permute(0, 2, 3, 1).cpu().numpy()
