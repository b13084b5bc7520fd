"""goggles eval-bag: metrics a bag allows, reports, the translated bag, damaged and foreign bags."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("rosbags")

from rosbags.highlevel import AnyReader  # noqa: E402

from sim2real_goggles.cli import main  # noqa: E402
from sim2real_goggles.data.bag_writer import BagWriter, header, typestore  # noqa: E402
from sim2real_goggles.data.collect import iter_frames  # noqa: E402
from sim2real_goggles.evaluation.bag_eval import (  # noqa: E402
    evaluate_bag,
    half_period_ns,
    pair_by_stamp,
    psnr,
    reference_flicker,
    temporal_diffs,
    translator_name,
)
from sim2real_goggles.evaluation.metrics import confusion_matrix, iou_from_confusion, miou  # noqa: E402
from sim2real_goggles.models.checkpoint import load_checkpoint  # noqa: E402
from sim2real_goggles.training.segmenter import predict  # noqa: E402
from sim2real_goggles.translation import Translator  # noqa: E402

T0 = 1_700_000_000_000_000_000
PERIOD = 100_000_000  # 10 Hz camera
N = 12


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_frames() -> tuple[np.ndarray, np.ndarray]:
    """N consecutive real_lab frames (64x64) of one episode and their ground-truth masks."""
    images, masks = [], []
    for frame in iter_frames(["real_lab"], 1, seed=7, image_size=64, driver="expert", max_steps=N + 5):
        images.append(frame.images["real_lab"])
        masks.append(frame.masks["real_lab"])
    assert len(images) >= N
    return np.stack(images[:N]), np.stack(masks[:N])


def _mean_iou(pred: np.ndarray, masks: np.ndarray) -> float:
    return miou(iou_from_confusion(confusion_matrix(pred, masks)))


def write_paired_bag(path: Path, images: np.ndarray, masks: np.ndarray, drop_reference: int = 5) -> None:
    """Camera at 10 Hz; reference = the camera image itself, 3 ms later, one frame missing;
    labels with exact stamps but logged in reverse order, plus one far from any frame."""
    with BagWriter(path) as bag:
        for i, img in enumerate(images):
            bag.write_image("/camera/image_raw", T0 + i * PERIOD, img)
            if i != drop_reference:
                bag.write_image("/camera/image_sim", T0 + i * PERIOD + 3_000_000, img)
        for i in reversed(range(len(masks))):
            log = T0 + (len(masks) - 1 - i) * PERIOD + 1_000_000
            bag.write_image("/camera/segmentation_gt", log, masks[i], stamp_ns=T0 + i * PERIOD)
        bag.write_image("/camera/segmentation_gt", T0 + 60 * PERIOD, masks[0], stamp_ns=T0 + 60 * PERIOD)


def _synthetic(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth moving gradients with noise: a camera stream without a simulator."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        base = np.stack([(xx + 4 * t) % 256, (yy * 2 + t) % 256, (xx + yy) % 256], axis=-1)
        frames.append(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_camera_bag(path: Path, images: np.ndarray, storage: str = "mcap", broken: int = 0) -> None:
    """A real robot's bag: camera only (plus a chatter topic), optionally with malformed images."""
    Image = typestore().types["sensor_msgs/msg/Image"]
    String = typestore().types["std_msgs/msg/String"]
    with BagWriter(path, storage=storage) as bag:
        for i, img in enumerate(images):
            bag.write_image("/camera/image_raw", T0 + i * PERIOD, img, encoding="bgr8" if i % 2 else "rgb8")
            bag.write("/chatter", T0 + i * PERIOD + 1, String(data=f"hello {i}"))
        for k in range(broken):  # a row stride shorter than a row: does not decode
            stamp = T0 + (len(images) + k) * PERIOD
            fields = {"height": 4, "width": 4, "encoding": "rgb8", "is_bigendian": 0, "step": 3}
            bad = Image(header=header(stamp, "camera"), data=np.zeros(12, np.uint8), **fields)
            bag.write("/camera/image_raw", stamp, bad)


# ----------------------------------------------------------------------------- definitions


def test_pairing_takes_exact_stamps_else_the_nearest_within_half_a_period():
    frames = T0 + np.arange(5) * PERIOD
    tol = half_period_ns(frames)
    assert tol == PERIOD // 2
    others = np.array([frames[3], frames[0] + 40_000_000, frames[1] - 2_000_000, frames[1] + 1_000_000, T0 + 10**12])
    index = pair_by_stamp(frames, others, tol)
    # frame 0: 40 ms away (within 50); frame 1: the nearer of -2 ms / +1 ms; frame 2: none within
    # 50 ms; frame 3: exact; frame 4: none
    assert index.tolist() == [1, 3, -1, 0, -1]
    assert pair_by_stamp(frames, np.array([], np.int64), tol).tolist() == [-1] * 5
    assert pair_by_stamp(frames[:1], frames[:1] + 1, half_period_ns(frames[:1])).tolist() == [
        -1
    ]  # one frame: exact only


def test_flicker_and_psnr_definitions():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (4, 8, 8, 3)).astype(np.uint8)
    assert psnr(x[0], x[0]) == 100.0
    assert psnr(x[0], x[0] + 1) == pytest.approx(10 * np.log10(255**2), abs=1e-9)  # MSE 1
    y = (x + 10).astype(np.uint8)  # a constant offset keeps every temporal difference
    paired = np.array([True, True, False, True])
    flicker = reference_flicker(y, x, paired)
    assert flicker[0] == 0.0 and np.isnan(flicker[1:3]).all()
    assert np.allclose(temporal_diffs(y), temporal_diffs(x))
    frozen = np.repeat(y[:1], 4, axis=0)  # goggles that freeze the image
    assert (temporal_diffs(frozen) == 0).all()
    assert reference_flicker(frozen, x, np.ones(4, bool)) == pytest.approx(temporal_diffs(x))


def test_translator_names_are_unique_and_topic_safe():
    taken = {"none"}
    assert translator_name("pretrained:cyclegan", {"method": "whatever"}, taken) == "cyclegan"
    assert translator_name("runs/a.pt", {"method": "vr_goggles"}, taken) == "vr_goggles"
    assert translator_name("runs/my-model.v2.pt", {}, taken) == "my_model_v2"
    assert translator_name("runs/x.pt", {"method": "none"}, taken) == "none_2"
    assert translator_name("b.pt", {"method": "cyclegan"}, {"none", "cyclegan", "cyclegan_2"}) == "cyclegan_3"


# ----------------------------------------------------------------------------- a paired bag


def test_paired_bag_known_values_reports_and_translated_bag(tmp_path, real_frames, capsys):
    images, masks = real_frames
    bag, out, translated_bag = tmp_path / "paired", tmp_path / "report", tmp_path / "translated"
    write_paired_bag(bag, images, masks)
    argv = ["eval-bag", str(bag), "--topic", "/camera/image_raw", "--translator", "pretrained:cyclegan"]
    argv += ["--reference-topic", "/camera/image_sim", "--labels-topic", "/camera/segmentation_gt"]
    argv += ["--out", str(out), "--write-bag", str(translated_bag), "--batch", "5"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "cyclegan" in stdout and "report.html" in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == N and report["size"] == 64 and report["skipped"] == 0
    assert report["paired"] == {"reference": N - 1, "labels": N, "tolerance_ms": 50.0}
    assert list(report["translators"]) == ["none", "cyclegan"]
    assert report["metrics_unavailable"] == {} and report["read_fps"] > 0

    segmenter = load_checkpoint("pretrained:segmenter").build("cpu")
    none = report["translators"]["none"]
    # no goggles against a reference that is the input itself: perfect pixel metrics
    assert none["psnr"] == 100.0 and none["ssim"] == 1.0 and none["flicker"] == 0.0
    assert none["fd_seg"] == pytest.approx(0.0, abs=1e-3)
    assert none["flicker_ratio"] == 1.0 and none["shift_err"] == 0.0 and none["fps"] is None
    assert none["sem_miou"] == pytest.approx(_mean_iou(predict(segmenter, images), masks), abs=1e-4)
    assert set(none["per_class_iou"]) == {"floor", "wall", "obstacle", "target"}

    cyclegan = report["translators"]["cyclegan"]
    translated = Translator.load("pretrained:cyclegan", device="cpu")(images)
    assert cyclegan["sem_miou"] == pytest.approx(_mean_iou(predict(segmenter, translated), masks), abs=0.01)
    assert cyclegan["psnr"] < 100.0 and cyclegan["ssim"] < 1.0 and cyclegan["flicker"] > 0
    assert cyclegan["fd_seg"] > 0 and cyclegan["shift_err"] > 0 and cyclegan["frames"] == N
    assert cyclegan["fps"] > 0 and 0 < cyclegan["latency_ms"]["p50"] <= cyclegan["latency_ms"]["p95"]
    assert 0 < cyclegan["throughput_vs_read"] < 1

    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from elsewhere
    assert page.count('src="data:image/png;base64,') == 2
    assert "Contact sheet" in page and "Per-frame metrics" in page and "cyclegan" in page and "none" in page
    assert 'class="num best"' in page and "What the numbers mean" in page
    markdown = (out / "report.md").read_text()
    assert "| sem mIoU |" in markdown and "(contact_sheet.png)" in markdown
    for png in ("timeline.png", "contact_sheet.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")

    with AnyReader([translated_bag]) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            "/camera/image_raw": "sensor_msgs/msg/Image",
            "/goggles/cyclegan/image": "sensor_msgs/msg/Image",
        }
        got: dict[str, list] = {"/camera/image_raw": [], "/goggles/cyclegan/image": []}
        for conn, log_ns, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            got[conn.topic].append((log_ns, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, msg))
    stamps = [T0 + i * PERIOD for i in range(N)]
    for topic in got:
        assert [(log, stamp) for log, stamp, _ in got[topic]] == list(zip(stamps, stamps))
    first = got["/goggles/cyclegan/image"][0][2]
    assert (first.height, first.width, first.encoding) == (64, 64, "rgb8")
    assert np.abs(first.data.reshape(64, 64, 3).astype(int) - translated[0]).max() <= 1
    assert np.array_equal(got["/camera/image_raw"][3][2].data.reshape(64, 64, 3), images[3])


# ----------------------------------------------------------------------------- a robot's bag


def test_bag_without_reference_or_labels_reports_what_it_allows(tmp_path, capsys, caplog):
    bag = tmp_path / "robot"
    write_camera_bag(bag, _synthetic(10, 96, 128), broken=1)
    argv = ["eval-bag", str(bag), "--topic", "/camera/image_raw", "--translator", "pretrained:cyclegan"]
    assert main([*argv, "--out", str(tmp_path / "r"), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report == json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["frames"] == 10 and report["skipped"] == 1
    assert report["topics"]["/camera/image_raw"]["undecodable"] == 1
    assert "1 messages on /camera/image_raw did not decode" in caplog.text
    assert any("did not decode" in w for w in report["warnings"])
    assert "rendered in the sim profile" in report["fd_seg_reference"]
    for name, entry in report["translators"].items():
        for key in ("confidence", "confident_fraction", "entropy", "flicker_ratio", "temporal_diff", "shift_err"):
            assert entry[key] is not None, (name, key)
        assert entry["fd_seg"] > 0
        for key in ("sem_miou", "psnr", "ssim", "flicker"):
            assert key not in entry
        assert 0 < entry["confidence"] <= 1 and 0 <= entry["entropy"] <= 2
    assert report["translators"]["none"]["flicker_ratio"] == 1.0
    assert report["translators"]["cyclegan"]["shift_err"] > 0
    assert "no --labels-topic" in report["metrics_unavailable"]["sem_miou"]
    assert "no --reference-topic" in report["metrics_unavailable"]["psnr"]
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Not computed" in page and "no --labels-topic" in page


def test_max_frames_and_size(tmp_path):
    bag = tmp_path / "robot"
    write_camera_bag(bag, _synthetic(8, 48, 64))
    report = evaluate_bag(
        bag, "/camera/image_raw", [], tmp_path / "r", size=32, max_frames=5, sim_frames=0, progress=False
    )
    assert report["frames"] == 5 and report["size"] == 32 and report["skipped"] == 0
    assert "fd_seg" in report["metrics_unavailable"] and "fd_seg" not in report["translators"]["none"]


# ----------------------------------------------------------------------------- bad bags


def test_foreign_missing_and_unsupported_bags_are_named(tmp_path, capsys):
    garbage = tmp_path / "broken.mcap"
    garbage.write_bytes(b"\x89MCAP0\r\n" + bytes(range(256)) * 4)
    assert main(["eval-bag", str(garbage), "--topic", "/camera/image_raw", "--out", str(tmp_path / "r")]) == 2
    assert "broken.mcap" in capsys.readouterr().err

    bag = tmp_path / "robot"
    write_camera_bag(bag, _synthetic(2, 16, 16))
    assert main(["eval-bag", str(bag), "--topic", "/camera/nope", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "goggles eval-bag: error:" in err and str(bag) in err and "'/camera/nope'" in err
    assert "/camera/image_raw (sensor_msgs/msg/Image)" in err and "/chatter (std_msgs/msg/String)" in err

    assert main(["eval-bag", str(bag), "--topic", "/chatter", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(bag) in err and "std_msgs/msg/String" in err and "sensor_msgs/msg/Image" in err
    assert not (tmp_path / "r").exists()


def _top_level_records(data: bytes) -> list[tuple[int, int]]:
    """(offset, opcode) of the top-level records of an MCAP file."""
    pos, out = 8, []
    while pos + 9 <= len(data):
        op, length = data[pos], int.from_bytes(data[pos + 1 : pos + 9], "little")
        out.append((pos, op))
        pos += 9 + length
    return out


@pytest.mark.parametrize("damage", ["truncated-mcap", "truncated-sqlite3", "bad-chunk-mcap"])
def test_damaged_bag_is_evaluated_up_to_the_damage(tmp_path, damage, capsys, caplog):
    bag = tmp_path / "cut"
    n = 16
    storage = "sqlite3" if "sqlite3" in damage else "mcap"
    write_camera_bag(bag, _synthetic(n, 192, 256), storage=storage)  # 147 kB frames: several MCAP chunks
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    data = bytearray(storage_file.read_bytes())
    if damage.startswith("truncated"):  # the recorder died: no footer / pages missing
        data = data[: int(len(data) * 0.7)]
    else:  # the file opens, but a record inside the second chunk claims more bytes than it has
        chunks = [pos for pos, op in _top_level_records(bytes(data)) if op == 0x06]
        assert len(chunks) >= 3
        first_record = chunks[1] + 9 + 40  # record header, then the chunk's 40-byte preamble
        data[first_record + 1 : first_record + 9] = (2**40).to_bytes(8, "little")
    storage_file.write_bytes(bytes(data))
    out = tmp_path / "r"
    assert main(["eval-bag", str(bag), "--topic", "/camera/image_raw", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    frames = report["frames"]
    assert 0 < frames < n
    assert report["skipped"] == n - frames == report["topics"]["/camera/image_raw"]["lost"]
    assert report["damage"] and f"{n - frames} messages on /camera/image_raw lost" in caplog.text
    assert any("evaluated up to the damage" in w for w in report["warnings"])
    assert (out / "report.html").is_file()
