"""Translator runtime: sizes, batches, channel handling, device and checkpoint checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sim2real_goggles.models.checkpoint import CheckpointError, save_checkpoint
from sim2real_goggles.models.networks import CompactGenerator, SegmenterNet
from sim2real_goggles.translation import Translator, as_rgb_batch


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "g.pt"
    save_checkpoint(path, CompactGenerator(ngf=8, n_blocks=1), "compact", {"ngf": 8, "n_blocks": 1})
    return Translator.load(path, device="cpu")


@pytest.mark.parametrize("shape", [(64, 64, 3), (37, 53, 3), (5, 3, 3), (2, 30, 41, 3)])
def test_any_size_and_batches_keep_shape(translator, shape):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8)
    out = translator(images)
    assert out.shape == shape and out.dtype == np.uint8


def test_odd_size_is_padded_not_resized(tmp_path):
    """The crop of a padded translation equals the translation of the same pixels inside a
    larger image, away from the border: no resampling happened. (A batch-norm generator in
    eval mode is purely local; instance norm would couple every pixel through its statistics.)"""
    torch.manual_seed(0)
    path = save_checkpoint(
        tmp_path / "bn.pt",
        CompactGenerator(ngf=8, n_blocks=1, norm="batch"),
        "compact",
        {"ngf": 8, "n_blocks": 1, "norm": "batch"},
    )
    translator = Translator.load(path, device="cpu")
    rng = np.random.default_rng(1)
    big = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    odd = big[:61, :59]
    a = translator(odd).astype(int)
    b = translator(big)[:61, :59].astype(int)
    inner = (slice(8, 48), slice(8, 46))
    assert np.abs(a[inner] - b[inner]).max() <= 1


def test_batch_equals_single_images(translator):
    rng = np.random.default_rng(2)
    batch = rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)
    together = translator(batch)
    for i in range(3):
        assert np.abs(together[i].astype(int) - translator(batch[i]).astype(int)).max() <= 1


def test_greyscale_and_rgba_are_converted(translator):
    grey = np.random.default_rng(5).integers(0, 256, size=(32, 32), dtype=np.uint8)
    assert np.array_equal(translator(grey), translator(np.repeat(grey[..., None], 3, axis=2)))
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 3] = 255
    assert np.array_equal(translator(rgba), translator(rgba[..., :3]))


def test_bad_inputs_are_rejected_clearly():
    with pytest.raises(ValueError, match="uint8"):
        as_rgb_batch(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        as_rgb_batch(np.zeros((2, 8, 8, 5), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        as_rgb_batch(np.zeros((0, 8, 3), np.uint8))


def test_translation_changes_with_the_weights(translator, tmp_path):
    img = np.random.default_rng(3).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    save_checkpoint(other, CompactGenerator(ngf=8, n_blocks=1), "compact", {"ngf": 8, "n_blocks": 1})
    assert not np.array_equal(translator(img), Translator.load(other, device="cpu")(img))


def test_non_generator_checkpoint_and_missing_cuda(tmp_path):
    seg = save_checkpoint(tmp_path / "seg.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    with pytest.raises(CheckpointError, match=r"seg\.pt: holds a 'segmenter' network, not a translator"):
        Translator.load(seg)
    gen = save_checkpoint(tmp_path / "g.pt", CompactGenerator(ngf=8, n_blocks=1), "compact", {"ngf": 8, "n_blocks": 1})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            Translator.load(gen, device="cuda")
        with pytest.raises(ValueError, match="fp16"):
            Translator.load(gen, device="cpu", half=True)
        assert Translator.load(gen).device.type == "cpu"  # auto


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp16_matches_cpu(translator):
    gpu = Translator(translator.checkpoint, device="cuda")
    assert gpu.half
    img = np.random.default_rng(4).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    assert np.abs(gpu(img).astype(int) - translator(img).astype(int)).max() <= 3


def test_resize_translates_at_the_training_size(tmp_path):
    """With resize=True a large camera image is translated at the training scale: the result
    equals translating the area-downscaled image, upscaled back."""
    import cv2

    torch.manual_seed(0)
    path = save_checkpoint(
        tmp_path / "g.pt", CompactGenerator(ngf=4, n_blocks=1), "compact", {"ngf": 4, "n_blocks": 1}, {"image_size": 32}
    )
    plain = Translator.load(path, device="cpu")
    scaled = Translator.load(path, device="cpu", resize=True)
    img = np.random.default_rng(5).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    out = scaled(img)
    assert out.shape == img.shape
    small = cv2.resize(img, (43, 32), interpolation=cv2.INTER_AREA)
    expected = cv2.resize(plain(small), (128, 96), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(out, expected)
    assert not np.array_equal(out, plain(img))


def test_input_scale_enlarges_the_frame_on_top_of_resize(tmp_path):
    """A checkpoint's input_scale s runs the generator at s times the size it would use otherwise
    (the training size with resize=True), bilinear up, area down; an argument overrides it."""
    import cv2

    torch.manual_seed(0)
    arch = {"ngf": 4, "n_blocks": 1}
    path = save_checkpoint(
        tmp_path / "g.pt", CompactGenerator(ngf=4, n_blocks=1), "compact", arch, {"image_size": 32, "input_scale": 2.0}
    )
    plain = Translator.load(path, device="cpu", input_scale=1.0)
    img = np.random.default_rng(6).integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    work = cv2.resize(img, (85, 64), interpolation=cv2.INTER_AREA)  # shorter side 2 x 32
    expected = cv2.resize(plain(work), (128, 96), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(Translator.load(path, device="cpu", resize=True)(img), expected)
    small = img[:30, :40]
    big = cv2.resize(small, (80, 60), interpolation=cv2.INTER_LINEAR)
    expected = cv2.resize(plain(big), (40, 30), interpolation=cv2.INTER_AREA)
    assert np.array_equal(Translator.load(path, device="cpu")(small), expected)
    with pytest.raises(ValueError, match="input_scale must be in"):
        Translator.load(path, device="cpu", input_scale=-1.0)
