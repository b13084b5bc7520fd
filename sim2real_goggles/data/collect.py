"""Drive the robot and record camera frames in one or more looks, with masks and poses.

The expert and random driving are mixed so a dataset holds both purposeful approaches to the
target and arbitrary viewpoints. All profiles see exactly the same poses (paired frames).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
from tqdm import tqdm

from sim2real_goggles.envs.expert import Expert, random_action

DRIVERS = ("mixed", "expert", "random")


@dataclass
class Frame:
    """One recorded frame: where it came from and what each look saw."""

    index: int
    episode: int
    seed: int
    step: int
    action: int | None
    robot_pose: list[float]
    target_pose: list[float]
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        del d["images"], d["masks"]
        return d


def iter_frames(
    profiles: Sequence[str],
    episodes: int,
    seed: int = 0,
    image_size: int = 64,
    driver: str = "mixed",
    random_fraction: float = 0.3,
    every: int = 1,
    max_steps: int = 400,
    progress: bool = False,
) -> Iterator[Frame]:
    """Yield paired frames. Episode ``e`` uses env seed ``seed + e``.

    ``driver``: ``expert`` follows the planner, ``random`` picks uniform actions, ``mixed``
    takes a random action with probability ``random_fraction`` and the expert's otherwise.
    """
    if driver not in DRIVERS:
        raise ValueError(f"unknown driver {driver!r}: choose one of {DRIVERS}")
    if not profiles:
        raise ValueError("iter_frames needs at least one profile")
    env = gym.make(
        "Goggles/NavToTarget-v0",
        image_size=image_size,
        profile=profiles[0],
        paired_profiles=list(profiles[1:]),
        info_mask=True,
        max_episode_steps=max_steps,
    )
    names = [env.unwrapped.renderer.profile.name] + list(env.unwrapped.paired)
    index = 0
    try:
        for ep in tqdm(range(episodes), desc="collect", unit="ep", disable=not progress):
            s = seed + ep
            obs, info = env.reset(seed=s)
            expert = Expert(env.unwrapped)
            rng = np.random.default_rng([seed, ep, 1])
            step, action, done = 0, None, False
            while True:
                if step % every == 0:
                    images = {names[0]: obs, **info.get("paired", {})}
                    masks = {names[0]: info["mask"], **info.get("paired_mask", {})}
                    yield Frame(
                        index,
                        ep,
                        s,
                        step,
                        action,
                        [round(float(v), 5) for v in info["robot_pose"]],
                        [round(float(v), 5) for v in info["target_pose"]],
                        images,
                        masks,
                    )
                    index += 1
                if done:
                    break
                use_random = driver == "random" or (driver == "mixed" and rng.uniform() < random_fraction)
                action = random_action(rng) if use_random else expert.act()
                obs, _, terminated, truncated, info = env.step(action)
                step += 1
                done = terminated or truncated
    finally:
        env.close()


def collect_dataset(
    out: Path,
    profiles: Sequence[str],
    episodes: int,
    seed: int = 0,
    image_size: int = 64,
    driver: str = "mixed",
    every: int = 1,
    max_steps: int = 400,
    preview: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Write ``out/<profile>/images/NNNNNN.png``, ``out/<profile>/masks/NNNNNN.png`` and
    ``out/manifest.json``; optionally ``out/preview.png``. Returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    frames_meta: list[dict[str, Any]] = []
    preview_frames: list[Frame] = []
    names: list[str] = []
    for frame in iter_frames(
        profiles, episodes, seed, image_size, driver, every=every, max_steps=max_steps, progress=progress
    ):
        names = list(frame.images)
        for name in names:
            for kind, arr in (("images", frame.images[name]), ("masks", frame.masks[name])):
                folder = out / name / kind
                folder.mkdir(parents=True, exist_ok=True)
                data = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR) if arr.ndim == 3 else arr
                if not cv2.imwrite(str(folder / f"{frame.index:06d}.png"), data):
                    raise OSError(f"could not write {folder / f'{frame.index:06d}.png'}")
        frames_meta.append(frame.meta())
        if preview and len(preview_frames) < 64:
            preview_frames.append(frame)
    manifest = {
        "format": "sim2real_goggles.collect/1",
        "profiles": names,
        "image_size": image_size,
        "seed": seed,
        "episodes": episodes,
        "episode_seeds": [seed + e for e in range(episodes)],
        "driver": driver,
        "every": every,
        "classes": {"0": "floor", "1": "wall", "2": "obstacle", "3": "target", "255": "ignore"},
        "frames": frames_meta,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if preview and preview_frames:
        step = max(1, len(preview_frames) // 8)
        sheet = contact_sheet(preview_frames[::step][:8], names)
        cv2.imwrite(str(out / "preview.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return manifest


CLASS_COLORS = np.zeros((256, 3), np.uint8)
# A palette of its own (not the sim look's colours), so a mask is never mistaken for a render.
CLASS_COLORS[:4] = [(50, 60, 150), (235, 205, 60), (40, 200, 200), (235, 40, 200)]
CLASS_COLORS[255] = (0, 0, 0)


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """Class-id mask -> RGB (floor blue, wall yellow, obstacle cyan, target magenta, ignore black)."""
    return CLASS_COLORS[mask]


def contact_sheet(frames: Sequence[Frame], names: Sequence[str], cell: int = 128) -> np.ndarray:
    """Rows of frames; columns: each look, then the first look's mask."""
    rows = []
    for frame in frames:
        tiles = [frame.images[n] for n in names] + [colorize_mask(frame.masks[names[0]])]
        tiles = [cv2.resize(t, (cell, cell), interpolation=cv2.INTER_NEAREST) for t in tiles]
        rows.append(np.concatenate(tiles, axis=1))
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for i, label in enumerate([*names, "mask"]):
        cv2.putText(header, label, (i * cell + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, *rows], axis=0)
