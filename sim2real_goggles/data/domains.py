"""Image domains: one interface over appearance profiles and folders of images.

A *domain* is an indexable collection of samples ``{"image": HxWx3 uint8 RGB, "mask": HxW
uint8 or None, "source": str}``. Trainers and evaluators take any domain, so "real" can be a
real-like profile rendered here, a folder of a user's own camera images or a rosbag2 recording
of their camera topic. Unreadable images (folders) and undecodable messages (bags) are skipped
with a warning and counted (``skipped``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from sim2real_goggles.appearance.profile import ProfileError, list_profiles, resolve_profile_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


class Domain(Protocol):
    name: str

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, Any]: ...


class FolderDomain:
    """Every image below ``root`` (sorted), optionally resized to ``image_size``.

    Masks are picked up when an ``images/NAME`` file has a ``masks/NAME`` sibling (the layout
    ``goggles collect`` writes). Unreadable files are skipped with a warning and counted in
    :attr:`skipped`; the next readable image is returned in their place.
    """

    def __init__(self, root: str | Path, image_size: int | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: image folder not found")
        self.name = self.root.name
        self.image_size = image_size
        self.paths = sorted(
            p
            for p in self.root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and "masks" not in p.relative_to(self.root).parts
        )
        if not self.paths:
            raise ValueError(f"{self.root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        self.skipped: set[Path] = set()

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"{self.root}: index {index} out of range for {n} images")
        index %= n
        for k in range(n):
            path = self.paths[(index + k) % n]
            if path in self.skipped:
                continue
            sample = self._read(path)
            if sample is not None:
                return sample
        raise ValueError(f"{self.root}: none of the {n} images is readable")

    def _read(self, path: Path) -> dict[str, Any] | None:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            self.skipped.add(path)
            log.warning("%s: unreadable image skipped (%d skipped so far)", path, len(self.skipped))
            return None
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        mask = None
        if path.parent.name == "images":
            mask_path = path.parent.parent / "masks" / (path.stem + ".png")
            if mask_path.is_file():
                mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if self.image_size is not None and rgb.shape[:2] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            if mask is not None:
                mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        return {"image": rgb, "mask": mask, "source": str(path)}


class ProfileDomain:
    """``n`` frames rendered in a profile by the collector's mixed driving (held in memory): a
    drive of ``frames_per_episode`` steps in each room (seeds ``seed``, ``seed + 1``, ...), of
    which every ``stride``-th view is kept (``stride`` > 1: the same kinds of views, from more
    rooms)."""

    def __init__(
        self,
        profile: str | Path,
        n: int = 512,
        seed: int = 0,
        image_size: int = 64,
        frames_per_episode: int = 32,
        stride: int = 1,
    ):
        from sim2real_goggles.data.collect import iter_frames

        if stride < 1:
            raise ValueError(f"{profile}: frame stride must be at least 1, not {stride}")
        self.name = str(profile)
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        per_room = max(1, frames_per_episode // stride)
        episodes = max(1, -(-n // per_room)) * 4  # generous; we stop at n
        for frame in iter_frames(
            [str(profile)], episodes, seed=seed, image_size=image_size, every=stride, max_steps=frames_per_episode
        ):
            (name,) = frame.images
            self.name = name
            self.images.append(frame.images[name])
            self.masks.append(frame.masks[name])
            if len(self.images) >= n:
                break

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.images[index], "mask": self.masks[index], "source": f"{self.name}#{index}"}


def open_domain(spec: str | Path, image_size: int = 64, n: int = 512, seed: int = 0, frame_stride: int = 1) -> Domain:
    """A profile (shipped name or YAML path), a folder of images, or a rosbag2 recording
    (``BAG[:TOPIC]``, see :mod:`sim2real_goggles.data.bags`).

    A bare shipped profile name (``sim``) means the profile even when a folder of that name
    exists in the working directory; write ``./sim`` for the folder.
    """
    text = str(spec)
    path = Path(spec)
    bare_name = "/" not in text and not text.startswith(".")
    if bare_name and text in list_profiles():
        return ProfileDomain(text, n=n, seed=seed, image_size=image_size, stride=frame_stride)
    from sim2real_goggles.data.bags import BagDomain, is_bag

    if is_bag(spec):
        return BagDomain(spec, image_size=image_size, n=n)
    if path.is_dir():
        return FolderDomain(path, image_size=image_size)
    try:
        resolve_profile_path(spec)
    except ProfileError as exc:
        raise ValueError(f"{spec}: neither an image folder nor a profile ({exc})") from exc
    return ProfileDomain(spec, n=n, seed=seed, image_size=image_size, stride=frame_stride)


def load_arrays(
    spec: str | Path,
    n: int,
    image_size: int,
    seed: int = 0,
    require_masks: bool = False,
    frame_stride: int = 1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to ``n`` samples of a domain as arrays: images (N, H, W, 3) uint8 and masks (N, H, W)
    uint8, or None when any sample has no mask (an error with ``require_masks``). A profile
    keeps every ``frame_stride``-th view of each room's drive (:class:`ProfileDomain`)."""
    domain = open_domain(spec, image_size=image_size, n=n, seed=seed, frame_stride=frame_stride)
    samples = [domain[i] for i in range(min(n, len(domain)))]
    images = np.stack([s["image"] for s in samples])
    if all(s["mask"] is not None for s in samples):
        return images, np.stack([s["mask"] for s in samples])
    if require_masks:
        raise ValueError(f"{spec}: masks are needed for every image (an images/ + masks/ folder, or a profile)")
    return images, None
