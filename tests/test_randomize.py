"""The ``randomized`` appearance family (domain randomisation): members, env look switching, and
the policy trainer's DR baseline path."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from sim2real_goggles.appearance.profile import ProfileError, load_profile, profile_from_dict
from sim2real_goggles.appearance.randomize import (
    RANGES,
    VALIDATION_SEED_START,
    random_profile,
    training_member,
    validation_member,
)
from sim2real_goggles.envs.nav_to_target import NavToTargetEnv

MEMBERS = range(40)


def _within(value: float, lo_hi: tuple[float, float]) -> bool:
    return lo_hi[0] - 1e-9 <= value <= lo_hi[1] + 1e-9


def _elevation_deg(direction) -> float:
    x, y, z = direction
    return math.degrees(math.atan2(z, math.hypot(x, y)))


def _content(profile) -> str:
    raw = dataclasses.asdict(profile)
    for key in ("name", "description", "source"):
        raw.pop(key)
    return json.dumps(raw, sort_keys=True)


def test_members_are_valid_deterministic_and_distinct():
    members = [random_profile(s) for s in MEMBERS]
    assert [p.name for p in members] == [f"randomized#{s}" for s in MEMBERS]
    assert random_profile(5) == members[5]  # same seed, same profile
    assert len({_content(p) for p in members}) == len(members)  # every seed a different look
    for p in members:
        # What the family writes is a profile file's content: it round-trips through validation.
        raw = json.loads(json.dumps(dataclasses.asdict(p)))
        raw.pop("source")
        assert profile_from_dict(raw, source=p.source) == p
    # Both texture kinds, both shadow settings and JPEG on and off occur.
    textures = [t for p in members for t in p.textures.values()]
    assert any(t.color is not None for t in textures) and any(t.noise is not None for t in textures)
    assert {p.light.shadows for p in members} == {True, False}
    assert {p.sensor.jpeg_quality is None for p in members} == {True, False}


def test_members_never_use_photo_textures_and_stay_in_range():
    for s in MEMBERS:
        p = random_profile(s)
        for t in p.textures.values():
            assert t.skimage is None and t.file is None, (p.name, t)
            assert _within(t.hue_jitter, RANGES.hue_jitter) and _within(t.scale_jitter, RANGES.scale_jitter)
        assert _within(_elevation_deg(p.light.direction), RANGES.light_elevation_deg)
        assert _within(p.camera.fov_deg, RANGES.fov_deg) and _within(p.camera.k1, RANGES.k1)
        assert _within(p.sensor.exposure, RANGES.exposure) and _within(p.sensor.noise_std, RANGES.noise_std)


@pytest.mark.parametrize("look", ["real_lab", "real_office"])
def test_evaluation_looks_are_outside_the_family_but_inside_its_ranges(look):
    p = load_profile(look)
    # Not a member: the family has no photo textures, every evaluation look has some.
    assert any(t.skimage is not None or t.file is not None for t in p.textures.values())
    # ...yet its light, lens and sensor are plausible draws of the family.
    light, cam, sensor = p.light, p.camera, p.sensor
    assert _within(_elevation_deg(light.direction), RANGES.light_elevation_deg)
    assert all(_within(c, RANGES.light_color) for c in light.color)
    for name in ("ambient", "diffuse", "specular"):
        assert _within(getattr(light, name), getattr(RANGES, name)), name
    for name in ("fov_deg", "k1", "k2", "vignetting"):
        assert _within(getattr(cam, name), getattr(RANGES, name)), name
    for name in ("exposure", "blur_sigma", "noise_std", "gamma"):
        assert _within(getattr(sensor, name), getattr(RANGES, name)), name
    assert all(_within(g, RANGES.white_balance) for g in sensor.white_balance)
    if sensor.jpeg_quality is not None:
        assert _within(sensor.jpeg_quality, RANGES.jpeg_quality)


def test_member_specs_load_and_the_family_alone_is_rejected():
    assert load_profile("randomized:7") == random_profile(7)
    assert load_profile("randomized#7") == random_profile(7)  # a member's name is a spec too
    with pytest.raises(ProfileError, match="family.*randomized:SEED"):
        load_profile("randomized")
    for bad in ("randomized:-1", "randomized:x"):
        with pytest.raises(ProfileError, match="integer >= 0"):
            load_profile(bad)


def test_training_and_validation_members_are_disjoint_and_resume_safe():
    train = {training_member(0, e) for e in range(2000)}
    assert len(train) == 2000 and max(train) < VALIDATION_SEED_START
    assert training_member(0, 3) == training_member(0, 3) != training_member(1, 3)
    assert validation_member(0) == VALIDATION_SEED_START


def _room(env: NavToTargetEnv):
    lay = env.layout
    return (lay.width, lay.depth, lay.walls, lay.obstacles, lay.target, lay.start)


def test_env_switches_look_between_episodes_on_the_same_room():
    env = NavToTargetEnv(profile="sim", image_size=32)
    fixed = NavToTargetEnv(profile="sim", image_size=32)
    try:
        obs_sim, info = env.reset(seed=5)
        room = _room(env)
        obs_a, info_a = env.reset(seed=5, options={"profile": random_profile(1)})
        assert info_a["profile"] == "randomized#1" and _room(env) == room
        env.set_profile("randomized:2")
        assert env.profile.name == "randomized#1"  # takes effect at the next reset
        obs_b, info_b = env.reset(seed=5)
        assert info_b["profile"] == "randomized#2" and _room(env) == room
        assert not np.array_equal(obs_a, obs_b) and not np.array_equal(obs_sim, obs_a)
        assert env.reset(seed=5)[1]["profile"] == "randomized#2"  # the look stays until changed
        # Switching the look draws nothing from the env's RNG: unseeded resets walk the same rooms.
        fixed.reset(seed=5)
        for look in ("randomized:3", "real_office"):
            env.reset(options={"profile": look})
            fixed.reset()
            assert _room(env) == _room(fixed)
        with pytest.raises(ProfileError):
            env.set_profile("randomized")
    finally:
        env.close()
        fixed.close()


def test_a_fixed_look_renders_the_same_after_switching():
    fresh = NavToTargetEnv(profile="real_lab", image_size=32, info_mask=True)
    switched = NavToTargetEnv(profile="sim", image_size=32, info_mask=True)
    try:
        switched.reset(seed=1, options={"profile": "randomized:4"})
        for seed in (0, 3):
            obs, info = fresh.reset(seed=seed)
            obs2, info2 = switched.reset(seed=seed, options={"profile": "real_lab"})
            assert np.array_equal(obs, obs2) and np.array_equal(info["mask"], info2["mask"])
            for action in (0, 1, 0, 2):
                obs, *_ = fresh.step(action)
                obs2, *_ = switched.step(action)
                assert np.array_equal(obs, obs2)
    finally:
        fresh.close()
        switched.close()


@pytest.mark.slow
def test_trainer_randomized_draws_a_new_look_per_episode(tmp_path, monkeypatch):
    from sim2real_goggles.evaluation import policy_eval
    from sim2real_goggles.models.checkpoint import load_checkpoint
    from sim2real_goggles.training.policy import PolicyTrainer, load_policy_recipe

    validated: list[tuple[str, int]] = []
    run_episodes = policy_eval.run_episodes

    def recording_run_episodes(policy, profile, episodes, seed, *args, **kwargs):
        validated.extend((str(profile), seed + i) for i in range(episodes))
        return run_episodes(policy, profile, episodes, seed, *args, **kwargs)

    monkeypatch.setattr(policy_eval, "run_episodes", recording_run_episodes)
    cfg = load_policy_recipe(
        dict(
            profile="randomized",
            expert_episodes=2,
            rounds=1,
            episodes_per_round=2,
            eval_episodes=2,
            epochs=1.0,
            batch_size=16,
            max_steps=15,
            width=8,
        )
    )
    trainer = PolicyTrainer(cfg, tmp_path / "dr.pt")
    trainer.train(progress=False)

    # One new member per training episode, drawn from (run seed, episode) alone.
    assert trainer.episode_looks == [f"randomized#{training_member(cfg.seed, e)}" for e in range(4)]
    assert len(set(trainer.episode_looks)) == 4
    assert trainer.episode_profile("randomized", 2) == random_profile(training_member(cfg.seed, 2))
    assert sum(len(a) for a in trainer.actions) > 0
    # Validation: the fixed validation members, never a training member or an evaluation look.
    members = [f"randomized:{validation_member(i)}" for i in range(2)]
    assert validated == [(members[0], cfg.eval_seed), (members[1], cfg.eval_seed + 1)] * 2

    meta = load_checkpoint(tmp_path / "dr.pt").metadata
    domains = meta["domains"]
    assert domains["train"] == "randomized" and "no photo textures" in domains["family"]
    assert domains["validation"].startswith(f"randomized:{VALIDATION_SEED_START}..")
    assert meta["complete"] and meta["rounds"] == 2


def test_profiles_cli_shows_a_member_and_writes_a_preview(tmp_path, capsys):
    import cv2

    from sim2real_goggles.cli import main

    assert main(["profiles", "show", "randomized:3"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "randomized#3"
    assert main(["profiles", "check", "randomized"]) == 2  # the family is not one look
    out = tmp_path / "dr_preview.png"
    assert main(["profiles", "sample", "--n", "3", "--seed", "5", "--size", "32", "--out", str(out)]) == 0
    sheet = cv2.imread(str(out))
    assert sheet.shape == (20 + 32, 3 * 32, 3)  # one row of three labelled members
