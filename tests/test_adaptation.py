"""Adaptation baselines (issue 9): gradient reversal, entropy, masked L1, DANN / ADVENT segmenter
training and the mask-aware CycleGAN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_translator_training import TINY as TINY_GAN  # the tiny CycleGAN settings

from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import SegmenterNet
from sim2real_goggles.training.adapt import (
    DomainClassifier,
    dann_scale,
    entropy_loss,
    grad_reverse,
    masked_l1,
    self_information,
)
from sim2real_goggles.training.segmenter import SegmenterConfig, _SelfTraining, train_segmenter
from sim2real_goggles.training.translator import TranslatorConfig, TranslatorTrainer


def test_gradient_reversal_is_identity_forward_and_flips_and_scales_the_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    upstream = torch.randn(3, 4)
    y = grad_reverse(x, 0.3)
    assert torch.equal(y, x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -0.3 * upstream)
    # composed with a loss: the reversed gradient is the negative of the plain one, scaled
    w = torch.randn(4)
    a = torch.randn(2, 4, requires_grad=True)
    (a * w).sum().backward()
    plain = a.grad.clone()
    a.grad = None
    (grad_reverse(a, 2.0) * w).sum().backward()
    assert torch.allclose(a.grad, -2.0 * plain)


def test_dann_scale_ramps_from_zero_to_one():
    values = [dann_scale(p) for p in (0.0, 0.1, 0.5, 1.0)]
    assert values[0] == 0.0
    assert values == sorted(values) and values[-1] > 0.999
    assert dann_scale(0.1) == pytest.approx(2 / (1 + math.exp(-1)) - 1)


def test_entropy_is_zero_for_one_hot_one_for_uniform_and_minimal_at_one_hot():
    labels = torch.randint(0, 4, (2, 5, 5))
    one_hot = torch.nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float() * 60.0
    assert entropy_loss(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_loss(torch.zeros(2, 4, 5, 5)).item() == pytest.approx(1.0, abs=1e-6)
    random = torch.randn(2, 4, 5, 5)
    assert 0.0 < entropy_loss(random).item() < 1.0
    # the self-information maps sum over classes to the normalised entropy
    info = self_information(random)
    assert info.shape == random.shape and (info >= 0).all()
    p = random.softmax(1)
    assert torch.allclose(info.sum(1), -(p * p.log()).sum(1) / math.log(4), atol=1e-6)
    # gradient descent on the entropy sharpens a prediction towards one-hot
    logits = torch.randn(1, 4, 1, 1, requires_grad=True)
    before = entropy_loss(logits).item()
    opt = torch.optim.SGD([logits], lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        entropy_loss(logits).backward()
        opt.step()
    assert entropy_loss(logits).item() < 0.1 * before


def test_masked_l1_weighs_inside_and_outside_as_documented():
    target = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, 0] = True  # one object pixel of 16
    pred = target.clone()
    pred[0, :, 0, 0] = 2.0  # error 2 on the object only
    assert masked_l1(pred, target, mask, 0.5, 0.5).item() == pytest.approx(0.5 * 2.0)
    assert masked_l1(pred, target, mask, 0.0, 1.0).item() == 0.0
    # the plain L1 dilutes the same error over the whole image
    assert torch.nn.functional.l1_loss(pred, target).item() == pytest.approx(2.0 / 16)
    pred2 = target.clone()
    pred2[0, :, 1:, :] = 1.0  # error 1 on 12 of the 15 background pixels
    assert masked_l1(pred2, target, mask, 0.5, 0.5).item() == pytest.approx(0.5 * 12 / 15)
    assert masked_l1(pred2, target, mask, 3.0, 0.0).item() == 0.0
    # a uniform error gives the plain L1 when the weights sum to 1; an empty region adds nothing
    uniform = target + 0.7
    assert masked_l1(uniform, target, mask, 0.5, 0.5).item() == pytest.approx(0.7)
    assert masked_l1(uniform, target, torch.zeros_like(mask), 0.5, 0.5).item() == pytest.approx(0.35)
    assert masked_l1(uniform, target, mask[:, None], 0.5, 0.5).item() == pytest.approx(0.7)


def test_domain_classifier_gives_one_logit_per_location():
    out = DomainClassifier(5, width=8, stages=2)(torch.randn(2, 5, 16, 16))
    assert out.shape == (2, 1, 4, 4)


TINY_SEG = dict(
    frames=48,
    iterations=12,
    batch_size=8,
    image_size=32,
    base_channels=8,
    eval_looks=("real_lab",),
    eval_frames=16,
    real="real_lab",
    adapt_warmup=2,
    threads=1,
)


@pytest.mark.parametrize(
    "adapt, weight, losses",
    [
        ("dann", "lambda_dann", ("seg", "domain")),
        ("advent", "lambda_entropy", ("seg", "entropy_real", "adv", "disc")),
        ("advent", "lambda_adv", ("seg", "entropy_real", "adv", "disc")),
    ],
)
def test_adapted_segmenter_training_runs_and_its_loss_changes_the_weights(tmp_path, adapt, weight, losses):
    on = train_segmenter(SegmenterConfig(adapt=adapt, **TINY_SEG), tmp_path / "on.pt", progress=False)
    train_segmenter(SegmenterConfig(adapt=adapt, **TINY_SEG, **{weight: 0.0}), tmp_path / "off.pt", progress=False)
    assert set(on["adaptation"]) == set(losses)
    assert on["final_loss"] < on["first_loss"]
    a, b = load_checkpoint(tmp_path / "on.pt"), load_checkpoint(tmp_path / "off.pt")
    assert a.arch == "segmenter" and a.metadata["method"] == f"segmenter_{adapt}"
    assert a.metadata["domains"] == {"train": "sim", "real": "real_lab"}
    # the same seed and batches: only the adaptation term differs, and it moves the segmenter
    assert any(not torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert a.build() is not None


def test_self_training_keeps_the_confident_share_of_every_class(monkeypatch):
    """CBST's class-balanced thresholds: a class the labeller is never sure of (the chair)
    keeps its most confident ``pseudo_portion`` of pixels instead of vanishing under one global
    threshold, and a pixel at least ``pseudo_confidence_cap`` confident is always kept."""
    cfg = SegmenterConfig(adapt="self_train", **{**TINY_SEG, "frames": 2}, pseudo_portion=0.25)
    st = _SelfTraining(cfg, SegmenterNet(base=8))
    n, h, w = st.x_real.shape[0], st.x_real.shape[2], st.x_real.shape[3]
    # left half floor at 0.95..0.99, right half target at 0.40..0.70 (never above the cap)
    conf = torch.empty(n, h, w)
    conf[:, :, : w // 2] = torch.linspace(0.95, 0.99, n * h * (w // 2)).reshape(n, h, w // 2)
    conf[:, :, w // 2 :] = torch.linspace(0.40, 0.70, n * h * (w - w // 2)).reshape(n, h, w - w // 2)
    label = torch.zeros(n, h, w, dtype=torch.long)
    label[:, :, w // 2 :] = 3
    probs = torch.zeros(n, 4, h, w)
    probs.scatter_(1, label[:, None], conf[:, None])
    monkeypatch.setattr(st, "_probabilities", lambda first: probs)
    st.relabel(first=True)
    y = st.y_real
    assert y is not None
    floor_kept = (y[:, :, : w // 2] == 0).float().mean()
    target_kept = (y[:, :, w // 2 :] == 3).float().mean()
    assert floor_kept == 1.0  # above the cap: all of it
    assert target_kept == pytest.approx(0.25, abs=0.01)  # its most confident quarter
    kept_conf = conf[y == 3]
    assert kept_conf.min() >= conf[:, :, w // 2 :][y[:, :, w // 2 :] != 3].max()
    assert set(y.unique().tolist()) == {0, 3, 255}
    info = st.rounds[-1]
    assert info["thresholds"][0] == pytest.approx(0.9) and info["thresholds"][3] < 0.7
    assert info["source"] == "student"  # no teacher configured


def test_self_training_starts_from_the_labeller_and_learns_from_the_teachers_labels(tmp_path):
    init = save_checkpoint(tmp_path / "init.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    cfg = SegmenterConfig(
        adapt="self_train",
        init=str(init),
        teacher="pretrained:vr_goggles_fast",
        self_train_rounds=2,
        augment=1.0,
        **TINY_SEG,
    )
    result = train_segmenter(cfg, tmp_path / "st.pt", progress=False)
    rounds = result["adaptation"]["rounds"]
    assert [r["source"] for r in rounds] == ["teacher", "student"]
    for r in rounds:
        assert 0.0 < r["kept_fraction"] <= 1.0
        assert all(t is None or t <= 0.9 for t in r["thresholds"])
        assert 0.0 <= r["kept_accuracy"] <= 1.0  # scored against the profile's masks, not trained on
    ck = load_checkpoint(tmp_path / "st.pt")
    assert ck.metadata["method"] == "segmenter_self_train"
    assert ck.metadata["domains"] == {"train": "sim", "real": "real_lab"}
    assert ck.metadata["init"] == str(init) and ck.metadata["teacher"] == "pretrained:vr_goggles_fast"
    start = load_checkpoint(init)
    assert ck.arch_kwargs == start.arch_kwargs
    assert any(not torch.equal(ck.state_dict[k], start.state_dict[k]) for k in start.state_dict)
    assert result["final_loss"] < result["first_loss"]


def test_adaptation_config_errors():
    with pytest.raises(ValueError, match="needs --real"):
        SegmenterConfig(adapt="dann")
    with pytest.raises(ValueError, match="unknown adaptation"):
        SegmenterConfig(adapt="coral", real="real_lab")
    with pytest.raises(ValueError, match="unknown stage"):
        SegmenterConfig(adapt="dann", real="real_lab", dann_levels=("enc9",))
    with pytest.raises(ValueError, match="--teacher"):
        SegmenterConfig(adapt="dann", real="real_lab", teacher="pretrained:vr_goggles")
    with pytest.raises(ValueError, match="pseudo_portion"):
        SegmenterConfig(adapt="self_train", real="real_lab", pseudo_portion=0.0)
    with pytest.raises(ValueError, match="self_train_rounds"):
        SegmenterConfig(adapt="self_train", real="real_lab", self_train_rounds=0)


def test_mask_aware_cyclegan_uses_masked_cycle_and_identity_terms(tmp_path):
    labeller = save_checkpoint(tmp_path / "lab.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    common = dict(method="cyclegan", labeller=str(labeller), iterations=4, **TINY_GAN)
    masked = TranslatorTrainer(TranslatorConfig(mask_loss=True, **common), tmp_path / "m.pt")
    plain = TranslatorTrainer(TranslatorConfig(**common), tmp_path / "p.pt")
    before = {k: v.clone() for k, v in masked.G_rs.state_dict().items()}
    log_m, log_p = masked.step(), plain.step()
    # same seed, same batches, same initial weights: the adversarial terms agree, the
    # reconstruction terms are the masked ones
    assert log_m["G_rs"] == pytest.approx(log_p["G_rs"])
    assert 0.0 < log_m["mask_fraction_sim"] < 1.0
    assert log_m["cycle_sim"] != pytest.approx(log_p["cycle_sim"])
    x_r, x_s, y_s = plain._batch()  # the next batch of both runs
    assert torch.equal(x_s, masked._batch()[1])
    mask = torch.isin(y_s, torch.tensor([2, 3]))
    with torch.no_grad():
        rec = masked.G_rs(masked.G_sr(x_s))
        idt = masked.G_rs(x_s)
    expected = masked_l1(rec, x_s, mask, 0.5, 0.5).item() * masked.cfg.lambda_cycle
    fn = masked._reconstruction_losses(x_r, y_s, {})["sim"]
    assert fn(rec, x_s).item() * masked.cfg.lambda_cycle == pytest.approx(expected)
    assert fn(idt, x_s).item() != pytest.approx(torch.nn.functional.l1_loss(idt, x_s).item())
    masked.train(progress=False)
    assert any(not torch.equal(before[k], masked.G_rs.state_dict()[k]) for k in before)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt.metadata["method"] == "cyclegan_masked"
    assert ckpt.metadata["config"]["mask_loss"] is True


def test_mask_aware_cyclegan_resumes_exactly_and_refuses_a_plain_checkpoint(tmp_path):
    labeller = save_checkpoint(tmp_path / "lab.pt", SegmenterNet(base=8), "segmenter", {"base": 8})
    cfg = TranslatorConfig(method="cyclegan", labeller=str(labeller), iterations=4, mask_loss=True, **TINY_GAN)
    straight = TranslatorTrainer(cfg, tmp_path / "a.pt")
    straight.train(progress=False)
    first = TranslatorTrainer(cfg, tmp_path / "b.pt")
    first.train(progress=False, stop_after=2)
    resumed = TranslatorTrainer(cfg, tmp_path / "b.pt")
    resumed.restore(tmp_path / "b.pt")
    resumed.train(progress=False)
    for name, tensor in straight.G_rs.state_dict().items():
        assert torch.equal(tensor, resumed.G_rs.state_dict()[name]), name
    plain = TranslatorTrainer(TranslatorConfig(method="cyclegan", iterations=2, **TINY_GAN), tmp_path / "p.pt")
    plain.train(progress=False)
    with pytest.raises(ValueError, match="was trained with cyclegan/compact, not cyclegan_masked"):
        TranslatorTrainer(cfg, tmp_path / "c.pt").restore(tmp_path / "p.pt")


def test_pmse_ignores_a_uniform_shift_on_the_mask_and_everything_outside_it():
    from sim2real_goggles.training.pixelda import masked_pmse

    target = torch.zeros(2, 3, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2, :2] = True
    shifted = target + 0.5  # the same colour change everywhere
    assert masked_pmse(shifted, target, mask).item() == pytest.approx(0.0, abs=1e-7)
    outside = target.clone()
    outside[:, :, 3, 3] = 5.0  # any change off the mask is free
    assert masked_pmse(outside, target, mask).item() == pytest.approx(0.0, abs=1e-7)
    shape = target.clone()
    shape[:, :, 0, 0] = 1.0  # one of the 4 masked pixels changes: d = 1 on 3 of 12 values
    assert masked_pmse(shape, target, mask).item() == pytest.approx(3 / 12 - (3 / 12) ** 2)
    assert masked_pmse(shape, target, torch.zeros_like(mask)).item() == 0.0


def test_pixelda_trains_generator_discriminator_and_task_segmenter_and_resumes(tmp_path):
    from sim2real_goggles.training.pixelda import PixelDAConfig, PixelDATrainer
    from sim2real_goggles.translation import Translator

    tiny = {k: v for k, v in TINY_GAN.items() if k != "pool_size"}
    cfg = PixelDAConfig(iterations=6, task_base=8, **tiny)
    trainer = PixelDATrainer(cfg, tmp_path / "pda.pt")
    before = {
        name: {k: v.clone() for k, v in net.state_dict().items()}
        for name, net in trainer.state_objects().items()
        if name in ("D", "T")
    }
    g_before = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    result = trainer.train(progress=False)
    for name in ("D", "T"):
        after = trainer.state_objects()[name].state_dict()
        assert any(not torch.equal(before[name][k], after[k]) for k in after), name
    assert any(not torch.equal(g_before[k], trainer.G.state_dict()[k]) for k in g_before)
    assert {"G_adv", "G_task", "content", "T", "D"} <= set(trainer.history[-1])
    seg = load_checkpoint(result["segmenter"])
    assert seg.arch == "segmenter" and seg.metadata["method"] == "segmenter_pixelda"
    assert seg.metadata["domains"] == {"train": "sim", "real": "real_lab"}
    # the generator is a deterministic sim->real translator (z = 0) for policy training
    refiner = Translator.load(tmp_path / "pda.pt")
    frame = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    assert refiner.metadata["direction"] == "sim->real"
    assert np.array_equal(refiner(frame), refiner(frame)) and refiner(frame).shape == frame.shape
    # noise changes the generated image
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert not torch.equal(trainer.G(x, torch.ones(1, cfg.noise_dim)), trainer.G(x))

    straight = PixelDATrainer(cfg, tmp_path / "a.pt")
    straight.train(progress=False)
    first = PixelDATrainer(cfg, tmp_path / "b.pt")
    first.train(progress=False, stop_after=3)
    resumed = PixelDATrainer(cfg, tmp_path / "b.pt")
    resumed.restore(tmp_path / "b.pt")
    resumed.train(progress=False)
    for net in ("G", "T", "D"):
        a, b = getattr(straight, net).state_dict(), getattr(resumed, net).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), net


def test_seg_table_judges_every_row_on_the_same_frames_and_writes_json_and_markdown(tmp_path, capsys, monkeypatch):
    import json

    from sim2real_goggles.cli import main
    from sim2real_goggles.evaluation import segmentation_table

    # the shipped adapted segmenters are found per method and look ...
    assert segmentation_table.shipped_segmenter("dann", "real_lab") == "pretrained:segmenter_dann"
    assert segmentation_table.shipped_segmenter("pixelda", "real_office") == "pretrained:segmenter_pixelda_real_office"
    assert segmentation_table.shipped_segmenter("advent", "my_camera") is None
    assert (
        segmentation_table.shipped_segmenter("self_train", "real_office")
        == "pretrained:segmenter_self_train_real_office"
    )
    # ... but here, as if none were shipped: given ones are used, the others reported missing
    monkeypatch.setattr(segmentation_table, "shipped_segmenter", lambda method, look: None)

    out = tmp_path / "seg"
    args = ["seg-table", "--looks", "real_lab", "--n", "16", "--out", str(out), "--json"]
    given = [
        "--checkpoint",
        "dann:real_lab=pretrained:segmenter",
        "--checkpoint",
        "advent:real_lab=pretrained:labeller",
    ]
    assert main([*args, "--methods", "no_adaptation,vr_goggles,dann,advent,pixelda,sim_on_sim", *given]) == 0
    table = json.loads(capsys.readouterr().out)
    by = {c["method"]: c for c in table["cells"]}
    assert set(by) == {"no_adaptation", "vr_goggles", "dann", "advent", "sim_on_sim"}
    assert [m["method"] for m in table["missing"]] == ["pixelda"]
    assert all(c["n"] == 16 and c["look"] == "real_lab" and c["latency_ms"] > 0 for c in by.values())
    # the same segmenter on the same frames gives the same numbers, whatever the row
    assert by["dann"]["sem_miou"] == by["no_adaptation"]["sem_miou"]
    assert by["dann"]["per_class_iou"] == by["no_adaptation"]["per_class_iou"]
    assert by["sim_on_sim"]["sem_miou"] > 0.95 and by["no_adaptation"]["sem_miou"] < 0.3
    assert by["vr_goggles"]["translator"] == "pretrained:vr_goggles"  # found in the manifest
    assert by["vr_goggles"]["sem_miou"] > by["no_adaptation"]["sem_miou"] + 0.2
    assert by["advent"]["sem_miou"] != by["dann"]["sem_miou"]
    md = (out / "segmentation.md").read_text()
    assert "| dann |" in md and "| real_lab | sem_miou | floor | wall | obstacle | target |" in md
    assert json.loads((out / "segmentation.json").read_text())["cells"] == table["cells"]
    assert main([*args, "--methods", "coral"]) == 2
