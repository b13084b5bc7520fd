"""SimGAN refiner training: its losses, the history buffer, learning and exact resume."""

from __future__ import annotations

import pytest
import torch

from sim2real_goggles.models.checkpoint import load_checkpoint
from sim2real_goggles.training.simgan import (
    HistoryBuffer,
    SimGANConfig,
    SimGANTrainer,
    local_adversarial_loss,
    self_regularisation,
)
from sim2real_goggles.translation import Translator

TINY = dict(
    image_size=32,
    frames=16,
    ngf=4,
    n_blocks=1,
    ndf=8,
    batch_size=4,
    history_size=8,
    checkpoint_every=1000,
    sample_every=1000,
)


def test_self_regularisation_compares_block_means():
    x = torch.rand(2, 3, 16, 16)
    assert self_regularisation(x, x, 4).item() == 0.0
    # a texture with zero mean over every 4x4 block is free; the same texture per pixel is not
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(8, 8) * 0.2
    assert self_regularisation(x + checker, x, 4).item() == pytest.approx(0.0, abs=1e-6)
    assert self_regularisation(x + checker, x, 1).item() == pytest.approx(0.2, abs=1e-6)


def test_local_adversarial_loss_is_logistic_per_patch():
    logits = torch.zeros(2, 1, 5, 5)
    assert local_adversarial_loss(logits, True).item() == pytest.approx(0.6931, abs=1e-4)
    assert local_adversarial_loss(torch.full((1, 1, 3, 3), 20.0), True).item() < 1e-6


def test_history_buffer_supplies_half_of_each_batch_once_filled():
    buf = HistoryBuffer(6)
    gen = torch.Generator().manual_seed(0)
    first = torch.zeros(4, 1, 1, 1)
    assert torch.equal(buf.mix(first, gen), first)  # empty: the batch itself
    assert len(buf.images) == 2  # half of the batch is stored
    new = torch.ones(4, 1, 1, 1)
    out = buf.mix(new, gen)
    assert out[:2].eq(1).all() and out[2:].eq(0).all()  # second half from history
    for k in range(10):
        buf.mix(torch.full((4, 1, 1, 1), 2.0 + k), gen)
    assert len(buf.images) == 6  # bounded


def test_phases_learning_and_checkpoint(tmp_path):
    cfg = SimGANConfig(iterations=24, pretrain_refiner=4, pretrain_discriminator=2, lr=2e-3, **TINY)
    trainer = SimGANTrainer(cfg, tmp_path / "sg.pt")
    before = {k: v.clone() for k, v in trainer.R.state_dict().items()}
    result = trainer.train(progress=False)
    h = trainer.history
    assert set(h[0]) == {"reg", "R_total"}  # refiner pre-training: self-regularisation only
    assert set(h[4]) == {"D"}  # discriminator pre-training
    assert {"reg", "R_adv", "D"} <= set(h[-1])  # adversarial
    d_pre = [x["D"] for x in h[4:6]]
    d_late = [x["D"] for x in h[-4:]]
    assert sum(d_late) / 4 < sum(d_pre) / 2  # the discriminator learns to tell refined from real
    assert any(not torch.equal(before[k], v) for k, v in trainer.R.state_dict().items())
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt.metadata["direction"] == "sim->real" and ckpt.metadata["complete"]
    refined = Translator(ckpt, device="cpu")(trainer.x_sim[:2].permute(0, 2, 3, 1).add(1).mul(127.5).byte().numpy())
    assert refined.shape == (2, 32, 32, 3)


def test_simgan_resume_equals_uninterrupted(tmp_path):
    cfg = SimGANConfig(iterations=8, pretrain_refiner=2, pretrain_discriminator=2, **TINY)
    straight = SimGANTrainer(cfg, tmp_path / "a.pt")
    straight.train(progress=False)
    first = SimGANTrainer(cfg, tmp_path / "b.pt")
    first.train(progress=False, stop_after=5)
    resumed = SimGANTrainer(cfg, tmp_path / "b.pt")
    resumed.restore(tmp_path / "b.pt")
    resumed.train(progress=False)
    for net in ("R", "D"):
        for name, tensor in getattr(straight, net).state_dict().items():
            assert torch.equal(tensor, getattr(resumed, net).state_dict()[name]), f"{net}.{name}"


def test_simgan_config_errors():
    with pytest.raises(ValueError, match="pre-training"):
        SimGANConfig(iterations=10, pretrain_refiner=8, pretrain_discriminator=2)
