"""goggles collect writes a dataset the domain reader (and so the trainers) can read."""

from __future__ import annotations

import json

import cv2
import numpy as np

from sim2real_goggles.cli import main
from sim2real_goggles.data.domains import FolderDomain, open_domain


def test_collect_paired_dataset_round_trip(tmp_path, capsys):
    out = tmp_path / "pairs"
    code = main(
        [
            "collect",
            "--paired",
            "sim,real_lab",
            "--episodes",
            "2",
            "--out",
            str(out),
            "--size",
            "32",
            "--max-steps",
            "12",
            "--preview",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["profiles"] == ["sim", "real_lab"] == printed["profiles"]
    assert manifest["episode_seeds"] == [0, 1]
    n = len(manifest["frames"])
    assert n == printed["frames"] and n >= 4
    first = manifest["frames"][0]
    assert first["step"] == 0 and first["action"] is None and len(first["robot_pose"]) == 3
    for name in ("sim", "real_lab"):
        images = sorted((out / name / "images").glob("*.png"))
        masks = sorted((out / name / "masks").glob("*.png"))
        assert len(images) == len(masks) == n
    # Paired: same pose, different look; masks are in each look's own camera model.
    sim0 = cv2.imread(str(out / "sim" / "images" / "000000.png"))
    lab0 = cv2.imread(str(out / "real_lab" / "images" / "000000.png"))
    assert sim0.shape == lab0.shape == (32, 32, 3)
    assert np.abs(sim0.astype(int) - lab0.astype(int)).mean() > 10
    mask = cv2.imread(str(out / "sim" / "masks" / "000000.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1, 2, 3, 255}
    preview = cv2.imread(str(out / "preview.png"))
    assert preview is not None and preview.shape[1] == 3 * 128  # sim | real_lab | mask

    domain = open_domain(out / "real_lab", image_size=32)
    assert isinstance(domain, FolderDomain) and len(domain) == n
    sample = domain[0]
    assert sample["image"].shape == (32, 32, 3) and sample["mask"].shape == (32, 32)


def test_collect_is_reproducible(tmp_path, capsys):
    for run in ("a", "b"):
        assert (
            main(
                [
                    "collect",
                    "--profile",
                    "real_office",
                    "--episodes",
                    "1",
                    "--out",
                    str(tmp_path / run),
                    "--size",
                    "32",
                    "--max-steps",
                    "6",
                    "--seed",
                    "5",
                ]
            )
            == 0
        )
    capsys.readouterr()
    a = sorted((tmp_path / "a" / "real_office" / "images").glob("*.png"))
    b = sorted((tmp_path / "b" / "real_office" / "images").glob("*.png"))
    assert len(a) == len(b) == 7
    for pa, pb in zip(a, b):
        assert np.array_equal(cv2.imread(str(pa)), cv2.imread(str(pb)))


def test_collect_bad_profile_fails_before_writing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["collect", "--profile", "nope_look", "--episodes", "1", "--out", str(out)]) == 2
    assert "nope_look" in capsys.readouterr().err
    assert not out.exists()
