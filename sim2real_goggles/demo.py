"""The simulator demo: the expert drives through rooms while every look is rendered side by side.

Writes a video (``demo.mp4``), a contact sheet (``demo.png``) and ``demo.json`` to the output
folder and returns the episode summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np

from sim2real_goggles.data.collect import colorize_mask
from sim2real_goggles.envs.expert import Expert


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (255, 255, 255), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def run_demo(
    out: Path,
    episodes: int = 3,
    seed: int = 0,
    image_size: int = 128,
    looks: tuple[str, ...] = ("sim", "real_lab", "real_office"),
    fps: int = 8,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    env = gym.make(
        "Goggles/NavToTarget-v0",
        image_size=image_size,
        profile=looks[0],
        paired_profiles=list(looks[1:]),
        info_mask=True,
        render_mode="rgb_array",
    )
    core = env.unwrapped
    tile = 192
    video_path = out / "demo.mp4"
    writer = None
    sheet_rows: list[np.ndarray] = []
    episodes_out = []
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            expert = Expert(core)
            steps, done, total_reward = 0, False, 0.0
            while True:
                views = [obs] + [info["paired"][name] for name in looks[1:]] + [colorize_mask(info["mask"])]
                labels = [*looks, f"mask ({looks[0]} camera)"]
                tiles = [
                    _label(cv2.resize(v, (tile, tile), interpolation=cv2.INTER_NEAREST), lab)
                    for v, lab in zip(views, labels)
                ]
                tiles.append(_label(core.top_down(tile), f"episode {ep} step {steps}"))
                frame = np.concatenate(tiles, axis=1)
                if writer is None:
                    writer = cv2.VideoWriter(
                        str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0])
                    )
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                if steps == 8:
                    sheet_rows.append(frame)
                if done:
                    break
                obs, reward, terminated, truncated, info = env.step(expert.act())
                total_reward += float(reward)
                steps += 1
                done = terminated or truncated
            episodes_out.append(
                {
                    "seed": seed + ep,
                    "success": bool(info["is_success"]),
                    "steps": steps,
                    "collisions": int(info["collisions"]),
                    "return": round(total_reward, 3),
                }
            )
    finally:
        if writer is not None:
            writer.release()
        env.close()
    if sheet_rows:
        cv2.imwrite(str(out / "demo.png"), cv2.cvtColor(np.concatenate(sheet_rows, axis=0), cv2.COLOR_RGB2BGR))
    summary = {
        "looks": list(looks),
        "image_size": image_size,
        "episodes": episodes_out,
        "success_rate": sum(e["success"] for e in episodes_out) / max(len(episodes_out), 1),
        "video": str(video_path),
        "contact_sheet": str(out / "demo.png"),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=1))
    return summary
