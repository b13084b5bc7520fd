"""Networks and the checkpoint format."""

from __future__ import annotations

import pytest
import torch

from sim2real_goggles.models.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import (
    CompactGenerator,
    PatchGANDiscriminator,
    ResNet9Generator,
    SegmenterNet,
    build_model,
    count_parameters,
)


def test_resnet9_is_the_cyclegan_reference_size():
    assert count_parameters(ResNet9Generator()) == pytest.approx(11.378e6, rel=0.001)


def test_compact_generator_has_a_few_hundred_thousand_parameters():
    n = count_parameters(CompactGenerator())
    assert 200_000 <= n <= 600_000
    assert n * 20 < count_parameters(ResNet9Generator())


@pytest.mark.parametrize("arch", ["resnet9", "compact"])
@pytest.mark.parametrize("size", [(32, 32), (48, 64)])
def test_generators_keep_size_and_range(arch, size):
    g = build_model(arch, **({"ngf": 8, "n_blocks": 2} if arch == "resnet9" else {})).eval()
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape
    assert y.min() >= -1 and y.max() <= 1


def test_patchgan_scores_patches_with_a_70px_receptive_field():
    d = PatchGANDiscriminator().eval()
    with torch.no_grad():
        out = d(torch.zeros(1, 3, 128, 128))
    assert out.shape == (1, 1, 14, 14)  # as in the CycleGAN reference at 128x128
    # Receptive field: a change at one corner must not reach the score of the far patch.
    # (Batch norm in eval mode keeps the network local; instance norm mixes global statistics.)
    d = PatchGANDiscriminator(norm="batch").eval()
    x = torch.zeros(1, 3, 256, 256)
    y = x.clone()
    y[..., :8, :8] = 1.0
    with torch.no_grad():
        diff = (d(x) - d(y)).abs()[0, 0]
    assert diff[0, 0] > 0 and diff[-1, -1] == 0


def test_segmenter_outputs_class_logits_and_features():
    s = SegmenterNet(num_classes=4, base=8).eval()
    with torch.no_grad():
        logits = s(torch.zeros(3, 3, 64, 64))
        feats = s.features(torch.zeros(3, 3, 64, 64))
    assert logits.shape == (3, 4, 64, 64)
    assert feats.shape == (3, 32, 16, 16)


def test_the_context_segmenter_sees_the_whole_frame_and_the_plain_one_does_not():
    # the gradient of the far corner's logits with respect to the opposite corner's pixels is
    # exactly zero when no path connects them (plain U-Net, receptive field about 40 pixels)
    for context in (False, True):
        torch.manual_seed(0)
        s = SegmenterNet(base=8, context=context).eval()
        x = (torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_()
        logits = s(x)
        assert logits.shape == (1, 4, 64, 64)
        logits[..., -4:, -4:].sum().backward()
        assert x.grad[..., -4:, -4:].abs().max() > 0
        assert bool(x.grad[..., :6, :6].abs().max() > 0) is context


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="unknown architecture 'unet9000'"):
        build_model("unet9000")


def test_checkpoint_round_trip_is_exact(tmp_path):
    model = CompactGenerator(ngf=8, n_blocks=1)
    path = save_checkpoint(
        tmp_path / "g.pt", model, "compact", {"ngf": 8, "n_blocks": 1}, {"method": "cyclegan", "image_size": 64}
    )
    raw = torch.load(path, weights_only=True)  # the documented contract: loads with weights_only
    assert raw["format_version"] == FORMAT_VERSION
    ckpt = load_checkpoint(path)
    assert ckpt.arch == "compact" and ckpt.metadata["method"] == "cyclegan" and "code_version" in ckpt.metadata
    rebuilt = ckpt.build()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), rebuilt(x))
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away


def test_missing_truncated_foreign_and_newer_checkpoints_fail_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "good.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: not a readable checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt: not a sim2real_goggles checkpoint"):
        load_checkpoint(foreign)
    raw = torch.load(good, weights_only=True)
    raw["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.pt"
    torch.save(raw, newer)
    with pytest.raises(CheckpointError, match=r"newer\.pt: checkpoint format version 2 is newer"):
        load_checkpoint(newer)
    raw["format_version"] = FORMAT_VERSION
    raw["arch"]["kwargs"] = {"base": 16}  # weights of base 8 under a base-16 architecture
    mismatched = tmp_path / "mismatched.pt"
    torch.save(raw, mismatched)
    with pytest.raises(CheckpointError, match=r"mismatched\.pt: weights do not fit"):
        load_checkpoint(mismatched).build()
