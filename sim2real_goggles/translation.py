"""Translator runtime: load a generator checkpoint and translate uint8 camera images.

``Translator.load(path)`` picks the device (``auto``: CUDA when present, else CPU) and the
precision (fp16 by default on CUDA, fp32 on CPU). A call takes one image (H, W, 3) or a batch
(N, H, W, 3) of uint8 RGB and returns the same shape. Any size works: the generators need sides
that are multiples of 4 (and at least 8), so inputs are reflect-padded at the bottom and right
up to the next valid size and the output is cropped back (no resizing, so pixels stay aligned
with the input). Greyscale (H, W) or (H, W, 1)
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

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str | torch.device = "auto",
        half: bool | None = None,
        resize: bool = False,
        backend: str = "eager",
        threads: int | None = None,
    ) -> Translator:
        """``path``: a checkpoint file or ``pretrained:NAME``. ``resize``: see :meth:`__call__`.
        ``backend``: see :mod:`sim2real_goggles.inference` (all compute the same translation)."""
        return cls(load_checkpoint(path), device=device, half=half, resize=resize, backend=backend, threads=threads)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Translate uint8 (H, W, 3) or (N, H, W, 3) images (greyscale and RGBA are converted,
        see :func:`as_rgb_batch`) to the same shape.

        Any size works: the input is reflection-padded to a multiple of 4 (at least 8) and the
        output cropped back. A generator sees pixels at the scale it was trained on, so with
        ``resize=True`` the images are first scaled (area filter) so their shorter side is the
        training ``image_size``, then the output is scaled back (bilinear) to the input size:
        use it for camera images larger than the training images.
        """
        batch, single = as_rgb_batch(images)
        h, w = batch.shape[1:3]
        if self.resize and self.image_size and min(h, w) != self.image_size:
            scale = self.image_size / min(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = np.stack([cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in batch])
            out = self._translate(small)
            result = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR) for im in out])
        else:
            result = self._translate(batch)
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
