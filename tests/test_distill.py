"""Distillation of a translator into a batch-norm student: learning, exact resume, inference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sim2real_goggles.appearance.profile import IGNORE_ID
from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
from sim2real_goggles.models.networks import CompactGenerator, SegmenterNet
from sim2real_goggles.resources import share_path
from sim2real_goggles.training import distill
from sim2real_goggles.training.distill import (
    DistillConfig,
    DistillTrainer,
    crf_refine,
    label_with_teacher,
    noisy_student_batch,
)
from sim2real_goggles.training.translator import load_recipe
from sim2real_goggles.translation import Translator


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    torch.manual_seed(1)
    teacher = save_checkpoint(
        tmp / "teacher.pt",
        CompactGenerator(ngf=4, n_blocks=1),
        "compact",
        {"ngf": 4, "n_blocks": 1},
        {"method": "cyclegan", "direction": "real->sim", "domains": {"real": "real_lab", "sim": "sim"}},
    )
    segmenter = save_checkpoint(tmp / "seg.pt", SegmenterNet(base=4).eval(), "segmenter", {"base": 4})
    return str(teacher), str(segmenter)


def config(nets, **kw) -> DistillConfig:
    teacher, segmenter = nets
    base = dict(
        teacher=teacher,
        segmenter=segmenter,
        image_size=32,
        frames=16,
        ngf=4,
        n_blocks=1,
        batch_size=4,
        lr=5e-3,
        checkpoint_every=1000,
        sample_every=1000,
    )
    return DistillConfig(**(base | kw))


@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_student_learns_the_teacher(nets, tmp_path, noise):
    trainer = DistillTrainer(config(nets, iterations=150, batch_size=8, student_noise=noise), tmp_path / "s.pt")
    with torch.no_grad():
        x = trainer.x[:8]
        start = (trainer.student.eval()(x) - trainer.target[:8]).abs().mean()
    result = trainer.train(progress=False)
    l1 = [h["l1"] for h in trainer.history]
    assert np.mean(l1[-10:]) < 0.75 * np.mean(l1[:5])
    student = Translator.load(result["checkpoint"], device="cpu")
    with torch.no_grad():
        end = (student.model(x) - trainer.target[:8]).abs().mean()
    assert end < 0.9 * start  # the saved student (eval mode, folded batch norm) is closer too
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt.arch_kwargs == {"ngf": 4, "n_blocks": 1, "norm": "batch"}
    assert ckpt.metadata["method"] == "distill" and ckpt.metadata["teacher"]["method"] == "cyclegan"
    assert ckpt.metadata["domains"]["real"] == "real_lab"


def test_resume_equals_uninterrupted(nets, tmp_path):
    cfg = config(nets, iterations=6)
    straight = DistillTrainer(cfg, tmp_path / "a.pt")
    straight.train(progress=False)
    first = DistillTrainer(cfg, tmp_path / "b.pt")
    first.train(progress=False, stop_after=3)
    resumed = DistillTrainer(cfg, tmp_path / "b.pt")
    resumed.restore(tmp_path / "b.pt")
    resumed.train(progress=False)
    for name, tensor in straight.student.state_dict().items():
        assert torch.equal(tensor, resumed.student.state_dict()[name]), name


def test_layout_adversary_moves_the_student_and_resumes_exactly(nets, tmp_path):
    """lambda_layout_adv: a discriminator on the segmenter's class maps learns, its gradient
    reaches the student, and it is part of the exact resume."""
    cfg = config(nets, iterations=6, lambda_layout_adv=0.5)
    plain = DistillTrainer(replace(cfg, lambda_layout_adv=0.0), tmp_path / "p.pt")
    plain.train(progress=False, stop_after=1)
    assert plain.D is None and set(plain.history[-1]) == {"loss", "l1", "semantic"}
    straight = DistillTrainer(cfg, tmp_path / "a.pt")
    assert straight.x_sim.shape == straight.x.shape
    d_start = {k: v.clone() for k, v in straight.D.state_dict().items()}
    straight.train(progress=False, stop_after=1)
    # the same first batch (sim frames are drawn after the student's step): only the
    # adversarial term can make the two students differ
    assert straight.history[0]["G_layout"] > 0
    assert not all(torch.equal(v, straight.student.state_dict()[k]) for k, v in plain.student.state_dict().items())
    straight.train(progress=False)
    assert not all(torch.equal(v, straight.D.state_dict()[k]) for k, v in d_start.items())
    first = DistillTrainer(cfg, tmp_path / "b.pt")
    first.train(progress=False, stop_after=3)
    resumed = DistillTrainer(cfg, tmp_path / "b.pt")
    resumed.restore(tmp_path / "b.pt")
    resumed.train(progress=False)
    for ours, theirs in ((straight.student, resumed.student), (straight.D, resumed.D)):
        for name, tensor in ours.state_dict().items():
            assert torch.equal(tensor, theirs.state_dict()[name]), name
    with pytest.raises(ValueError, match="lambda_layout_adv must be >= 0"):
        config(nets, lambda_layout_adv=-1.0)


def test_recipe_and_config_errors(nets):
    cfg = load_recipe(share_path("config", "training", "distill.yaml"), frames=8)
    assert isinstance(cfg, DistillConfig) and cfg.norm == "batch" and cfg.teacher == "pretrained:vr_goggles"
    with pytest.raises(ValueError, match="norm must be batch or instance"):
        config(nets, norm="group")
    with pytest.raises(ValueError, match="student_noise must be in"):
        config(nets, student_noise=1.5)
    with pytest.raises(ValueError, match="option 'labeller' does not apply to method 'distill'"):
        load_recipe(share_path("config", "training", "distill.yaml"), labeller="x.pt")
    teacher, segmenter = nets
    with pytest.raises(ValueError, match="not a translator"):
        DistillTrainer(config((segmenter, segmenter)), "unused.pt")


def test_test_time_average_maps_every_view_back():
    """With teacher_tta the labels average mirrored and shifted views, each put back in place: for
    pointwise networks (which commute with shifts and mirroring) that is the plain labelling, to
    float precision; a view mapped back to the wrong place would blur the random frame."""
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), torch.nn.Tanh())
    segmenter = torch.nn.Conv2d(3, 5, 1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    t_plain, p_plain = label_with_teacher(teacher, segmenter, x)
    t_tta, p_tta = label_with_teacher(teacher, segmenter, x, tta=True)
    assert torch.allclose(t_tta, t_plain, atol=1e-5)
    assert torch.allclose(p_tta, p_plain, atol=1e-5)
    assert torch.allclose(p_plain.sum(1), torch.ones(2, 32, 32), atol=1e-5)
    # a 3x3 convolution commutes with shifts away from the border, and with mirroring only when
    # its kernel is mirror-symmetric: the average then changes only the 5-pixel border
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_((conv.weight + conv.weight.flip(3)) / 2)
    t_conv, _ = label_with_teacher(conv, segmenter, x)
    t_conv_tta, _ = label_with_teacher(conv, segmenter, x, tta=True)
    assert torch.allclose(t_conv_tta[:, :, 5:-5, 5:-5], t_conv[:, :, 5:-5, 5:-5], atol=1e-5)
    assert not torch.allclose(t_conv_tta, t_conv, atol=1e-3)
    with torch.no_grad():
        conv.weight[:, :, :, 0] += 0.5
    t_conv, _ = label_with_teacher(conv, segmenter, x)
    t_conv_tta, _ = label_with_teacher(conv, segmenter, x, tta=True)
    assert not torch.allclose(t_conv_tta[:, :, 5:-5, 5:-5], t_conv[:, :, 5:-5, 5:-5], atol=1e-3)


def test_noisy_student_moves_target_and_labels_with_the_input():
    """student_noise mirrors and shifts input, target and labels alike, so every label still
    belongs to its target pixel and the input still lines up with the target; the camera noise
    reaches the input only."""
    torch.manual_seed(0)
    smooth = F.interpolate(torch.rand(16, 3, 8, 8) * 2 - 1, size=(32, 32), mode="bilinear", align_corners=False)
    y = (smooth[:, 0] > 0).long() + 2 * (smooth[:, 1] > 0.3).long()
    x, t, labels = noisy_student_batch(smooth.clone(), smooth.clone(), y, torch.Generator().manual_seed(3), 1.0)
    assert x.shape == t.shape == smooth.shape and labels.shape == y.shape and labels.dtype == torch.long
    assert torch.equal(labels, (t[:, 0] > 0).long() + 2 * (t[:, 1] > 0.3).long())
    moved = [not torch.equal(t[i], smooth[i]) for i in range(16)]
    assert sum(moved) >= 8  # mirrored or shifted
    assert not torch.allclose(x, t, atol=0.05) and x.min() >= -1 and x.max() <= 1
    for i in range(16):  # noisy, yet aligned: the input follows its own target, not the original
        corr = torch.corrcoef(torch.stack([x[i].flatten(), t[i].flatten()]))[0, 1]
        assert corr > 0.8, (i, corr)
    again = noisy_student_batch(smooth.clone(), smooth.clone(), y, torch.Generator().manual_seed(3), 1.0)
    assert all(torch.equal(a, b) for a, b in zip((x, t, labels), again))
    # student_photometric=false: the same mirrors and shifts (same draws), no camera noise
    gx, gt, glabels = noisy_student_batch(
        smooth.clone(), smooth.clone(), y, torch.Generator().manual_seed(3), 1.0, photometric=False
    )
    assert torch.equal(gx, gt) and torch.equal(gt, t) and torch.equal(glabels, labels)


def test_label_threshold_keeps_only_confident_pixels(nets, tmp_path):
    """label_threshold ignores the pixels where the teacher's class probability is low: they get
    IGNORE_ID, the rest the teacher's class; threshold_image drops them from the L1 loss too."""
    plain = DistillTrainer(config(nets, teacher_tta=False), tmp_path / "a.pt")
    teacher = load_checkpoint(nets[0]).build("cpu").eval()
    segmenter = load_checkpoint(nets[1]).build("cpu").eval()
    _, probs = label_with_teacher(teacher, segmenter, plain.x)
    confidence, label = probs.max(1)
    threshold = float(confidence.median())
    cfg = config(nets, teacher_tta=False, label_threshold=threshold, threshold_image=True, iterations=40)
    trainer = DistillTrainer(cfg, tmp_path / "b.pt")
    low = confidence < threshold
    assert 0.3 < float(low.float().mean()) < 0.7 and trainer.label_fraction == pytest.approx(
        1 - float(low.float().mean())
    )
    assert torch.equal(trainer.labels[low], torch.full_like(trainer.labels[low], IGNORE_ID))
    assert torch.equal(trainer.labels[~low], label[~low]) and torch.equal(plain.labels, label)
    # a target that is wrong only where the labels are ignored does not reach the loss
    trainer.target = torch.where(low[:, None], torch.full_like(trainer.target, 50.0), trainer.target)
    assert trainer.step()["l1"] < 3
    trainer.cfg = config(nets, teacher_tta=False, label_threshold=threshold, threshold_image=False)
    assert trainer.step()["l1"] > 10
    result = DistillTrainer(cfg, tmp_path / "c.pt").train(progress=False)
    assert load_checkpoint(result["checkpoint"]).metadata["label_fraction"] == pytest.approx(
        1 - float(low.float().mean()), abs=1e-4
    )
    with pytest.raises(ValueError, match="label_threshold must be in"):
        config(nets, label_threshold=1.0)


def test_crf_snaps_uncertain_labels_to_the_image_edge():
    """The same class probabilities (confident left and right, an uncertain strip between that
    leans left) become labels whose boundary is wherever the image has its edge; confident
    pixels keep their class, weight 0 changes nothing and every pixel stays a distribution."""
    h = w = 32
    cols = torch.arange(w)
    p1 = torch.full((w,), 0.1)
    p1[16:19], p1[19:] = 0.45, 0.9
    probs = torch.stack([1 - p1, p1]).view(1, 2, 1, w).expand(1, 2, h, w).clone()
    assert torch.equal(probs.argmax(1)[0], (cols >= 19).long().expand(h, w))
    for edge in (16, 19):
        image = torch.where(cols >= edge, 1.0, -1.0).expand(1, 3, h, w).clone()
        refined = crf_refine(probs, image, iterations=5, sxy=2.0, srgb=0.1, weight=3.0)
        assert torch.equal(refined.argmax(1)[0], (cols >= edge).long().expand(h, w)), edge
        assert torch.allclose(refined.sum(1), torch.ones(1, h, w), atol=1e-5)
    assert torch.allclose(crf_refine(probs, image, weight=0.0), probs, atol=1e-5)


def test_label_crf_refines_the_labels_the_student_learns(nets, tmp_path, monkeypatch):
    """With label_crf the labels are the argmax of crf_refine's output on the frames and the
    teacher's probabilities, called with the configured parameters; the image targets stay."""
    plain = DistillTrainer(config(nets, teacher_tta=False), tmp_path / "a.pt")
    teacher = load_checkpoint(nets[0]).build("cpu").eval()
    segmenter = load_checkpoint(nets[1]).build("cpu").eval()
    _, probs = label_with_teacher(teacher, segmenter, plain.x)
    calls = []

    def spy(p, image, *args):
        calls.append((image, args))
        return crf_refine(p, image, *args).flip(1)  # a change the labels must show

    monkeypatch.setattr(distill, "crf_refine", spy)
    refined = DistillTrainer(config(nets, teacher_tta=False, label_crf=3, crf_srgb=0.2), tmp_path / "b.pt")
    assert len(calls) == 1 and torch.equal(calls[0][0], plain.x) and calls[0][1] == (3, 2.0, 0.2, 3.0)
    expected = crf_refine(probs, plain.x, iterations=3, sxy=2.0, srgb=0.2, weight=3.0).flip(1).argmax(1)
    assert torch.equal(refined.labels, expected) and torch.equal(plain.labels, probs.argmax(1))
    assert torch.equal(refined.target, plain.target)  # the image targets stay the teacher's
    with pytest.raises(ValueError, match="label_crf must be >= 0"):
        config(nets, label_crf=-1)
    with pytest.raises(ValueError, match="crf_sxy and crf_srgb > 0"):
        config(nets, label_crf=5, crf_srgb=0.0)


def test_rounds_label_each_student_with_the_one_before(nets, tmp_path, monkeypatch):
    """rounds=3 writes out.round1.pt, out.round2.pt and out.pt, each round's teacher the round
    before; --resume keeps finished rounds (no relabelling) and continues the unfinished one."""
    cfg = config(nets, iterations=4, rounds=3, teacher_tta=False)
    out = tmp_path / "s.pt"
    result = distill.train_rounds(cfg, out, progress=False)
    paths = [tmp_path / "s.round1.pt", tmp_path / "s.round2.pt", out]
    assert result["rounds"] == [str(p) for p in paths] and result["checkpoint"] == str(out)
    teachers = [load_checkpoint(p).metadata for p in paths]
    assert [m["teacher"]["checkpoint"] for m in teachers] == [nets[0], str(paths[0]), str(paths[1])]
    assert [m["round"] for m in teachers] == [1, 2, 3] and all(m["complete"] for m in teachers)
    assert teachers[1]["teacher"]["method"] == "distill" and teachers[2]["domains"]["real"] == "real_lab"

    # kill during round 3 after 2 of 4 iterations, then resume: rounds 1-2 untouched
    before = [p.read_bytes() for p in paths[:2]]
    out.unlink()
    DistillTrainer(replace(cfg, teacher=str(paths[1])), out, round_index=3).train(progress=False, stop_after=2)
    built = []
    real_init = DistillTrainer.__init__

    def counting_init(self, *args, **kw):
        built.append(args[1])
        real_init(self, *args, **kw)

    monkeypatch.setattr(DistillTrainer, "__init__", counting_init)
    resumed = distill.train_rounds(cfg, out, resume=True, progress=False)
    assert built == [out] and [p.read_bytes() for p in paths[:2]] == before
    assert resumed["iterations"] == 4 and load_checkpoint(out).metadata["complete"]
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        config(nets, rounds=0)


def test_input_scale_is_recorded_by_the_last_round_only_and_changes_no_weight(nets, tmp_path):
    """input_scale is how the finished student translates, not how it trains: the weights equal
    those of the same command without it, only the last round's checkpoint records it, and the
    Translator then runs the generator on frames enlarged by it and shrinks the result back."""
    import cv2

    cfg = config(nets, iterations=3, rounds=2, teacher_tta=False)
    distill.train_rounds(cfg, tmp_path / "a.pt", progress=False)
    distill.train_rounds(replace(cfg, input_scale=1.5), tmp_path / "b.pt", progress=False)
    assert load_checkpoint(tmp_path / "b.round1.pt").metadata["input_scale"] == 1.0
    assert load_checkpoint(tmp_path / "b.pt").metadata["input_scale"] == 1.5
    plain, scaled = Translator.load(tmp_path / "a.pt", device="cpu"), Translator.load(tmp_path / "b.pt", device="cpu")
    assert plain.input_scale == 1.0 and scaled.input_scale == 1.5
    img = np.random.default_rng(3).integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    same_weights = Translator.load(tmp_path / "b.pt", device="cpu", input_scale=1.0)
    assert np.array_equal(same_weights(img), plain(img))
    expected = [
        cv2.resize(
            plain(cv2.resize(im, (48, 48), interpolation=cv2.INTER_LINEAR)), (32, 32), interpolation=cv2.INTER_AREA
        )
        for im in img
    ]
    assert np.array_equal(scaled(img), np.stack(expected))
    assert not np.array_equal(scaled(img), plain(img))
    with pytest.raises(ValueError, match="input_scale must be in"):
        config(nets, input_scale=0.5)


def test_train_at_scale_trains_the_student_as_the_translator_runs_it(nets, tmp_path):
    """With train_at_scale the student's training frames are enlarged by input_scale (as the
    Translator enlarges them), which gives other weights than learning at image_size; the
    checkpoint records the choice, and without input_scale > 1 it changes nothing."""
    cfg = config(nets, iterations=3, teacher_tta=False, input_scale=1.5)
    sizes = []

    def train_sizes(trainer):
        hook = trainer.student.register_forward_pre_hook(
            lambda m, args: sizes.append(tuple(args[0].shape[-2:])) if m.training else None
        )
        trainer.train(progress=False)
        hook.remove()
        return [p.detach().clone() for p in trainer.student.parameters()]

    plain = train_sizes(DistillTrainer(cfg, tmp_path / "a.pt"))
    assert set(sizes) == {(32, 32)}
    sizes.clear()
    scaled = train_sizes(DistillTrainer(replace(cfg, train_at_scale=True), tmp_path / "b.pt"))
    assert set(sizes) == {(48, 48)}
    assert any(not torch.equal(a, b) for a, b in zip(plain, scaled))
    assert load_checkpoint(tmp_path / "b.pt").metadata["config"]["train_at_scale"] is True
    sizes.clear()
    train_sizes(DistillTrainer(replace(cfg, train_at_scale=True, input_scale=1.0), tmp_path / "c.pt"))
    assert set(sizes) == {(32, 32)}


def test_a_teacher_labels_as_it_translates_at_its_input_scale(nets, tmp_path):
    """A teacher whose checkpoint records input_scale labels through ScaledGenerator, which
    translates as the Translator does at that scale (up to the Translator's uint8 rounding of
    the enlarged frame)."""
    teacher, segmenter = nets
    ck = load_checkpoint(teacher)
    scaled = save_checkpoint(tmp_path / "t.pt", ck.build(), ck.arch, ck.arch_kwargs, ck.metadata | {"input_scale": 1.5})
    img = np.random.default_rng(8).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        module = distill.ScaledGenerator(ck.build(), 1.5)(x)
    as_uint8 = module.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    diff = np.abs(as_uint8.astype(int) - Translator.load(scaled, device="cpu")(img).astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.5
    assert np.abs(as_uint8.astype(int) - Translator.load(teacher, device="cpu")(img).astype(int)).mean() > 2

    trainer = DistillTrainer(config(nets, teacher=str(scaled), teacher_tta=False), tmp_path / "s.pt")
    seg = load_checkpoint(segmenter).build()
    expected, _ = label_with_teacher(distill.ScaledGenerator(ck.build(), 1.5), seg, trainer.x[:4])
    assert torch.allclose(trainer.target[:4], expected, atol=1e-5)
    plain = DistillTrainer(config(nets, teacher_tta=False), tmp_path / "p.pt")
    assert not torch.allclose(plain.target[:4], trainer.target[:4], atol=1e-3)
    shrinking = save_checkpoint(
        tmp_path / "u.pt", ck.build(), ck.arch, ck.arch_kwargs, ck.metadata | {"input_scale": 0.5}
    )
    with pytest.raises(ValueError, match="must not shrink"):
        DistillTrainer(config(nets, teacher=str(shrinking)), tmp_path / "v.pt")
