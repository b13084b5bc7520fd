"""The goggles command: help texts with examples, JSON outputs, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sim2real_goggles.cli import _parser, main

SUBCOMMANDS = [
    "demo",
    "collect",
    "eval-policy",
    "bench",
    "profiles",
    "train-segmenter",
    "train-translator",
    "eval-translator",
    "export",
    "translate",
    "pretrained",
]


@pytest.mark.parametrize("command", SUBCOMMANDS + ["bench env"])
def test_every_subcommand_help_shows_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command.split(), "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out
    assert f"goggles {command.split()[0]}" in out


def test_top_level_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in SUBCOMMANDS:
        assert command in out


def test_console_entry_point_runs_as_a_module():
    proc = subprocess.run(
        [sys.executable, "-m", "sim2real_goggles.cli", "profiles", "list"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    names = [line.split(":")[0] for line in proc.stdout.splitlines()]
    assert {"sim", "real_lab", "real_office"} <= set(names)


def test_eval_policy_json_keys_and_values(capsys):
    assert (
        main(
            [
                "eval-policy",
                "--policy",
                "expert",
                "--profile",
                "sim",
                "--episodes",
                "4",
                "--seed",
                "3",
                "--size",
                "32",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    for key in ("success_rate", "ci95", "episodes", "mean_steps", "collisions"):
        assert key in result
    assert result["episodes"] == 4
    assert result["success_rate"] == 1.0
    low, high = result["ci95"]
    assert 0.0 < low < 1.0 and high == 1.0
    assert result["collisions"] == 0


def test_eval_policy_random_is_worse_than_expert(capsys):
    main(["eval-policy", "--policy", "random", "--profile", "sim", "--episodes", "3", "--size", "32", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["success_rate"] < 1.0 or result["mean_steps"] > 100


def test_unknown_policy_and_profile_fail_clearly(capsys):
    assert main(["eval-policy", "--policy", "nonsense", "--episodes", "1"]) == 2
    assert "unknown policy 'nonsense'" in capsys.readouterr().err
    assert main(["eval-policy", "--policy", "expert", "--profile", "no_such_look", "--episodes", "1"]) == 2
    err = capsys.readouterr().err
    assert "no_such_look" in err and "real_lab" in err


def test_profiles_show_and_check(tmp_path, capsys):
    assert main(["profiles", "show", "real_lab"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["camera"]["k1"] > 0 and shown["name"] == "real_lab"
    bad = tmp_path / "bad.yaml"
    bad.write_text("textures: {floor: {color: [1,2,3]}}\n")
    assert main(["profiles", "check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "textures.wall" in err


def test_bench_env_json(capsys):
    assert main(["bench", "env", "--steps", "60", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in (
        "env_step_ms",
        "bare_render_ms",
        "overhead_ratio",
        "steps_per_s",
        "vector2_steps_per_s",
        "vector2_speedup",
    ):
        assert result[key] > 0, key
    assert result["overhead_ratio"] == pytest.approx(result["env_step_ms"] / result["bare_render_ms"], rel=0.01)


def test_parser_defaults_match_documented_commands():
    args = _parser().parse_args(["collect", "--paired", "sim,real_lab", "--episodes", "2", "--out", "x"])
    assert args.paired == ["sim", "real_lab"] and args.driver == "mixed" and args.size == 64


def test_train_translator_command_runs_and_resumes(tmp_path, capsys):
    out = tmp_path / "cg.pt"
    common = [
        "train-translator",
        "--method",
        "cyclegan",
        "--out",
        str(out),
        "--size",
        "32",
        "--frames",
        "8",
        "--batch-size",
        "2",
        "--json",
    ]
    assert main([*common, "--iterations", "2"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["iterations"] == 2
    assert main([*common, "--iterations", "3", "--resume"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["iterations"] == 3
    assert (tmp_path / "cg.pt.runs").is_dir()  # TensorBoard logs


def test_train_translator_set_overrides_and_wrong_options_fail_clearly(tmp_path, capsys):
    base = ["train-translator", "--out", str(tmp_path / "x.pt"), "--size", "32", "--frames", "4", "--iterations", "1"]
    assert main([*base, "--method", "cyclegan", "--set", "no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    assert main([*base, "--method", "simgan", "--segmenter", "seg.pt"]) == 2
    assert "does not apply to method 'simgan'" in capsys.readouterr().err
    # a key with its own option may come through --set, but not both ways at once
    assert main([*base, "--method", "cyclegan", "--set", "iterations=2"]) == 2
    assert "--set iterations=2 repeats an option" in capsys.readouterr().err
    out = tmp_path / "sg.pt"
    args = ["train-translator", "--method", "simgan", "--out", str(out), "--size", "32", "--frames", "8"]
    args += [
        "--batch-size",
        "2",
        "--set",
        "iterations=4",
        "--set",
        "pretrain_refiner=1",
        "--set",
        "pretrain_discriminator=1",
    ]
    assert main([*args, "--set", "ngf=4", "--set", "n_blocks=1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["iterations"] == 4
    from sim2real_goggles.models.checkpoint import load_checkpoint

    meta = load_checkpoint(out).metadata
    assert meta["method"] == "simgan" and meta["direction"] == "sim->real" and meta["config"]["ngf"] == 4


def test_train_translator_distill_rounds_in_one_command(tmp_path, capsys, monkeypatch):
    import torch

    from sim2real_goggles.models.checkpoint import load_checkpoint, save_checkpoint
    from sim2real_goggles.models.networks import CompactGenerator
    from sim2real_goggles.training import distributed

    torch.manual_seed(0)
    teacher = save_checkpoint(
        tmp_path / "t.pt", CompactGenerator(ngf=4, n_blocks=1), "compact", {"ngf": 4, "n_blocks": 1}
    )
    out = tmp_path / "s.pt"
    args = ["train-translator", "--method", "distill", "--teacher", str(teacher), "--out", str(out)]
    args += ["--size", "32", "--frames", "4", "--iterations", "2", "--batch-size", "2"]
    args += ["--set", "ngf=4", "--set", "n_blocks=1", "--set", "teacher_tta=false", "--set", "rounds=2"]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["rounds"] == [str(tmp_path / "s.round1.pt"), str(out)]
    assert load_checkpoint(out).metadata["teacher"]["checkpoint"] == str(tmp_path / "s.round1.pt")
    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    assert main(args) == 2
    assert "under torchrun train one round per command" in capsys.readouterr().err


def test_translate_file_and_folder_skips_unreadable_images(tmp_path, capsys):
    import cv2
    import numpy as np
    import torch

    from sim2real_goggles.models.checkpoint import save_checkpoint
    from sim2real_goggles.models.networks import CompactGenerator

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "g.pt", CompactGenerator(ngf=4, n_blocks=1), "compact", {"ngf": 4, "n_blocks": 1})
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i, shape in enumerate([(48, 64, 3), (30, 30, 3)]):
        cv2.imwrite(str(src / f"f{i}.png"), rng.integers(0, 256, shape, dtype=np.uint8))
    (src / "broken.png").write_bytes(b"not a png")
    (src / "notes.txt").write_text("ignored")
    assert main(["translate", str(src), str(tmp_path / "out"), "--translator", str(ckpt), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "translated 2 images" in captured.out and "1 skipped" in captured.out
    assert "broken.png" in captured.err
    assert cv2.imread(str(tmp_path / "out" / "f0.png")).shape == (48, 64, 3)
    assert not (tmp_path / "out" / "notes.txt").exists()
    single = tmp_path / "one.png"
    assert main(["translate", str(src / "f1.png"), str(single), "--translator", str(ckpt), "--device", "cpu"]) == 0
    assert cv2.imread(str(single)).shape == (30, 30, 3)
    assert main(["translate", str(tmp_path / "missing"), str(single), "--translator", str(ckpt)]) == 2


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_killed_training_saves_a_checkpoint_and_resumes(tmp_path):
    """SIGTERM (as from kill or a job scheduler) saves like Ctrl-C; --resume then finishes."""
    import os
    import signal
    import time

    from sim2real_goggles.models.checkpoint import load_checkpoint

    out = tmp_path / "cg.pt"
    args = [sys.executable, "-m", "sim2real_goggles.cli", "train-translator", "--method", "cyclegan"]
    args += ["--out", str(out), "--size", "32", "--frames", "8", "--batch-size", "2", "--iterations", "100000"]
    args += ["--set", "ngf=4", "--set", "n_blocks=1", "--set", "checkpoint_every=1000000", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = tmp_path / "cg.pt.runs"
    deadline = time.time() + 60
    while time.time() < deadline and not (events.is_dir() and any(f.stat().st_size > 2000 for f in events.iterdir())):
        time.sleep(0.5)  # TensorBoard has logged some iterations
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    ckpt = load_checkpoint(out)
    done = ckpt.metadata["iterations"]
    assert done > 0 and not ckpt.metadata["complete"] and "opt_G" in ckpt.extra
    resume = [a if a != "100000" else str(done + 2) for a in args] + ["--resume"]
    finished = subprocess.run(resume, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert json.loads(finished.stdout.strip().splitlines()[-1])["iterations"] == done + 2
