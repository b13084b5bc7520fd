"""Image domains: folders of a user's images and rendered profiles behind one interface."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from sim2real_goggles.data.domains import FolderDomain, ProfileDomain, load_arrays, open_domain


def _write_rgb(path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _solid(h: int, w: int, rgb) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = rgb
    return img


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "my_camera"
    _write_rgb(root / "a.png", _solid(40, 50, (200, 30, 10)))  # red, in RGB
    _write_rgb(root / "b.jpg", _solid(24, 24, (10, 30, 200)))  # blue
    _write_rgb(root / "sub" / "c.png", _solid(32, 32, (20, 180, 20)))
    (root / "notes.txt").write_text("not an image")
    return root


def test_folder_domain_reads_rgb_and_resizes(folder):
    domain = FolderDomain(folder, image_size=32)
    assert domain.name == "my_camera"
    assert len(domain) == 3  # a.png, b.jpg, sub/c.png; the .txt is ignored
    for i in range(len(domain)):
        sample = domain[i]
        assert sample["image"].shape == (32, 32, 3)
        assert sample["image"].dtype == np.uint8
        assert sample["mask"] is None
    first = domain[0]
    assert first["source"].endswith("a.png")
    r, g, b = first["image"][16, 16]
    assert r > 180 and b < 40  # RGB order, not OpenCV's BGR
    blue = domain[1]["image"][5, 5]
    assert blue[2] > 150 and blue[0] < 60  # JPEG, so approximately


def test_folder_domain_keeps_size_without_image_size(folder):
    domain = FolderDomain(folder)
    assert domain[0]["image"].shape == (40, 50, 3)


def test_folder_domain_picks_up_masks(tmp_path):
    root = tmp_path / "dataset"
    rng = np.random.default_rng(0)
    masks = {}
    (root / "masks").mkdir(parents=True)
    for name in ("000000", "000001"):
        _write_rgb(root / "images" / f"{name}.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        mask = np.zeros((64, 64), np.uint8)
        mask[:20] = 1
        mask[40:, 10:30] = 3
        mask[0, 0] = 255
        assert cv2.imwrite(str(root / "masks" / f"{name}.png"), mask)
        masks[name] = mask
    domain = FolderDomain(root, image_size=32)
    assert len(domain) == 2  # masks/ is not read as images
    sample = domain[0]
    assert sample["mask"] is not None
    assert sample["mask"].shape == (32, 32) and sample["mask"].dtype == np.uint8
    assert set(np.unique(sample["mask"]).tolist()) <= {0, 1, 3, 255}
    expected = cv2.resize(masks["000000"], (32, 32), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(sample["mask"], expected)


def test_folder_domain_skips_unreadable(tmp_path, caplog):
    root = tmp_path / "mixed"
    _write_rgb(root / "a.png", _solid(16, 16, (255, 0, 0)))
    (root / "b.png").write_bytes(b"\x89PNG garbage, not an image" * 4)
    _write_rgb(root / "c.png", _solid(16, 16, (0, 0, 255)))
    domain = FolderDomain(root, image_size=16)
    assert len(domain) == 3
    with caplog.at_level(logging.WARNING, logger="sim2real_goggles.data.domains"):
        sample = domain[1]
    assert sample["source"].endswith("c.png")
    assert sample["image"][0, 0].tolist() == [0, 0, 255]
    assert [p.name for p in domain.skipped] == ["b.png"]
    assert any("b.png" in rec.getMessage() and rec.levelno == logging.WARNING for rec in caplog.records)
    # Skipped once, not re-read (and not re-logged) on later passes.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sim2real_goggles.data.domains"):
        assert domain[1]["source"].endswith("c.png")
        assert domain[0]["source"].endswith("a.png")
    assert not caplog.records
    assert len(domain.skipped) == 1


def test_folder_domain_index_out_of_range(folder):
    domain = FolderDomain(folder, image_size=32)
    with pytest.raises(IndexError):
        domain[len(domain)]


def test_profile_domain_index_out_of_range(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    domain = open_domain("sim", image_size=32, n=2)
    with pytest.raises(IndexError):
        domain[2]
    assert len(list(domain)) == 2


def test_folder_domain_all_unreadable(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "x.png").write_bytes(b"nope")
    domain = FolderDomain(root)
    with pytest.raises(ValueError, match="readable"):
        domain[0]


def test_folder_domain_empty_folder(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError) as exc:
        FolderDomain(root)
    assert str(root) in str(exc.value)


def test_folder_domain_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError) as exc:
        FolderDomain(tmp_path / "absent")
    assert "absent" in str(exc.value)


def test_open_domain_folder(folder):
    domain = open_domain(folder, image_size=32)
    assert isinstance(domain, FolderDomain)
    assert domain[0]["image"].shape == (32, 32, 3)
    assert isinstance(open_domain(str(folder), image_size=32), FolderDomain)


def test_open_domain_profile(tmp_path, monkeypatch):
    domain = open_domain("sim", image_size=32, n=8)
    assert isinstance(domain, ProfileDomain)
    assert len(domain) == 8
    assert domain.name == "sim"
    for i in range(8):
        sample = domain[i]
        assert sample["image"].shape == (32, 32, 3) and sample["image"].dtype == np.uint8
        assert sample["mask"].shape == (32, 32)
        assert set(np.unique(sample["mask"]).tolist()) <= {0, 1, 2, 3, 255}
    assert not all(np.array_equal(domain[0]["image"], domain[i]["image"]) for i in range(1, 8))


def test_open_domain_profile_not_hidden_by_a_folder_without_images(tmp_path, monkeypatch):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "chair.urdf").write_text("<robot name='chair'/>")
    monkeypatch.chdir(tmp_path)
    domain = open_domain("sim", image_size=32, n=2)
    assert isinstance(domain, ProfileDomain)


def test_open_domain_yaml_path(tmp_path):
    from sim2real_goggles.appearance.profile import profiles_dir

    path = tmp_path / "look.yaml"
    path.write_text((profiles_dir() / "sim.yaml").read_text().replace("name: sim", "name: look"))
    domain = open_domain(str(path), image_size=32, n=2)
    assert isinstance(domain, ProfileDomain)
    assert len(domain) == 2 and domain.name == "look"


def test_open_domain_same_seed_same_frames(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = open_domain("real_office", image_size=32, n=3, seed=2)
    b = open_domain("real_office", image_size=32, n=3, seed=2)
    for i in range(3):
        assert np.array_equal(a[i]["image"], b[i]["image"])


def test_frame_stride_keeps_every_kth_view_of_each_drive_and_moves_on_to_more_rooms(tmp_path, monkeypatch):
    """frame_stride=8 keeps views 0, 8, 16, 24 and 32 of room `seed`'s 32-step drive (the same
    drive as with every view kept), then room `seed + 1`'s first view."""
    monkeypatch.chdir(tmp_path)
    every = load_arrays("sim", 33, 32, seed=5)[0]
    strided = load_arrays("sim", 6, 32, seed=5, frame_stride=8)[0]
    next_room = load_arrays("sim", 1, 32, seed=6)[0]
    for i in range(5):
        assert np.array_equal(strided[i], every[8 * i])
    assert np.array_equal(strided[5], next_room[0])
    with pytest.raises(ValueError, match="frame stride must be at least 1"):
        load_arrays("sim", 2, 32, frame_stride=0)


@pytest.mark.parametrize("spec", ["definitely_not_a_profile", "no/such/folder", "missing.yaml"])
def test_open_domain_garbage(spec):
    with pytest.raises(ValueError, match="neither an image folder nor a profile"):
        open_domain(spec, image_size=32, n=2)
