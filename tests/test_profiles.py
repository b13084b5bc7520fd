"""Appearance profiles: the shipped ones load, user profiles work with no code change, and every
kind of mistake in a profile file fails at load time with a message naming the file and the key."""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest
import yaml

import sim2real_goggles  # noqa: F401 - registers the environments
from sim2real_goggles.appearance.profile import (
    CLASS_NAMES,
    Profile,
    ProfileError,
    list_profiles,
    load_profile,
    profiles_dir,
)

ENV_ID = "Goggles/NavToTarget-v0"


def _shipped(name: str) -> dict:
    return yaml.safe_load((profiles_dir() / f"{name}.yaml").read_text())


def _write(tmp_path: Path, data: dict | str, name: str = "user.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def _floor_pixels(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return obs[mask == CLASS_NAMES.index("floor")].astype(np.float64)


# --------------------------------------------------------------------------- shipped profiles


def test_shipped_profiles_exist_and_load():
    names = list_profiles()
    assert {"sim", "real_lab", "real_office"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert isinstance(profile, Profile)
        assert profile.name == name
        assert set(profile.textures) == set(CLASS_NAMES)


def test_real_like_profiles_have_sensor_effects_and_sim_is_clean():
    assert not load_profile("sim").has_sensor_effects
    assert load_profile("real_lab").has_sensor_effects
    assert load_profile("real_office").has_sensor_effects


def test_unknown_profile_name_lists_shipped_names():
    with pytest.raises(ProfileError) as exc:
        load_profile("no_such_look")
    msg = str(exc.value)
    assert "no_such_look" in msg
    for name in ("sim", "real_lab", "real_office"):
        assert name in msg


def test_missing_profile_path_raises(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(ProfileError, match="absent.yaml"):
        load_profile(str(path))


# --------------------------------------------------------------------------- user profiles


def test_user_profile_by_path_renders_in_env(tmp_path):
    data = _shipped("sim")
    data["name"] = "blue_floor"
    data["textures"]["floor"] = {"color": [20, 60, 200]}
    path = _write(tmp_path, data)

    profile = load_profile(str(path))
    assert profile.name == "blue_floor"
    assert profile.texture("floor").color == (20, 60, 200)

    frames = {}
    for prof in ("sim", str(path)):
        env = gym.make(ENV_ID, profile=prof, image_size=32, info_mask=True)
        try:
            obs, info = env.reset(seed=3)
        finally:
            env.close()
        assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8
        frames[prof] = (obs, info)
    user_obs, user_info = frames[str(path)]
    sim_obs, sim_info = frames["sim"]
    assert user_info["profile"] == "blue_floor"
    # Same geometry, different look: the floor is blue in the user profile, grey in sim.
    np.testing.assert_array_equal(user_info["mask"], sim_info["mask"])
    user_floor = _floor_pixels(user_obs, user_info["mask"])
    sim_floor = _floor_pixels(sim_obs, sim_info["mask"])
    assert len(user_floor) > 0
    assert user_floor[:, 2].mean() > user_floor[:, 0].mean() + 80
    assert abs(sim_floor[:, 2].mean() - sim_floor[:, 0].mean()) < 5


def test_user_profile_name_defaults_to_file_stem(tmp_path):
    data = _shipped("sim")
    del data["name"]
    path = _write(tmp_path, data, name="my_look.yaml")
    assert load_profile(path).name == "my_look"


def test_user_profile_with_relative_texture_file(tmp_path):
    tex = np.zeros((16, 16, 3), np.uint8)
    tex[..., 1] = 230  # pure green (RGB)
    assert cv2.imwrite(str(tmp_path / "green.png"), cv2.cvtColor(tex, cv2.COLOR_RGB2BGR))
    data = _shipped("sim")
    data["name"] = "green_floor"
    data["textures"]["floor"] = {"file": "green.png", "tile_m": 0.5}
    path = _write(tmp_path, data)

    profile = load_profile(path)
    assert Path(profile.texture("floor").file) == (tmp_path / "green.png").resolve()
    env = gym.make(ENV_ID, profile=str(path), image_size=32, info_mask=True)
    try:
        obs, info = env.reset(seed=3)
    finally:
        env.close()
    floor = _floor_pixels(obs, info["mask"])
    assert len(floor) > 0
    assert floor[:, 1].mean() > floor[:, 0].mean() + 80


# --------------------------------------------------------------------------- errors


def _sim_with(**edits) -> dict:
    """sim.yaml with nested edits: key 'light.shadows' -> value (None deletes)."""
    data = copy.deepcopy(_shipped("sim"))
    for dotted, value in edits.items():
        *parents, leaf = dotted.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        if value is None:
            del node[leaf]
        else:
            node[leaf] = value
    return data


ERROR_CASES = {
    "unknown_top_level_key": (_sim_with(colour="red"), "colour"),
    "unknown_nested_key": (_sim_with(camera__fov=70), "camera.fov"),
    "unknown_texture_key": (_sim_with(textures__floor={"color": [1, 2, 3], "shine": 1}), "textures.floor.shine"),
    "unknown_class": (_sim_with(textures__ceiling={"color": [1, 2, 3]}), "textures.ceiling"),
    "bool_as_string": (_sim_with(light__shadows="yes"), "light.shadows"),
    "number_as_string": (_sim_with(sensor={"noise_std": "high"}), "sensor.noise_std"),
    "colour_wrong_length": (_sim_with(textures__wall={"color": [1, 2]}), "textures.wall.color"),
    "section_not_mapping": (_sim_with(light=[1, 2]), "light"),
    "two_sources": (_sim_with(textures__floor={"color": [1, 2, 3], "skimage": "brick"}), "textures.floor"),
    "no_source": (_sim_with(textures__floor={"tile_m": 1.0}), "textures.floor"),
    "missing_file": (_sim_with(textures__floor={"file": "nope.png"}), "textures.floor.file"),
    "unknown_skimage": (_sim_with(textures__wall={"skimage": "not_an_image"}), "textures.wall.skimage"),
    "missing_class": (_sim_with(textures__target=None), "textures.target"),
    "out_of_range": (_sim_with(camera__fov_deg=200), "camera.fov_deg"),
    "jitter_out_of_range": (
        _sim_with(textures__floor={"color": [1, 2, 3], "hue_jitter": 0.9}),
        "textures.floor.hue_jitter",
    ),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_invalid_profile_names_file_and_key(tmp_path, case):
    data, key = ERROR_CASES[case]
    path = _write(tmp_path, data, name=f"{case}.yaml")
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert str(path.resolve()) in msg
    assert key in msg


def test_missing_texture_file_message_names_the_texture_path(tmp_path):
    path = _write(tmp_path, _sim_with(textures__floor={"file": "nope.png"}))
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    assert str(tmp_path.resolve() / "nope.png") in str(exc.value)


def test_unreadable_texture_image(tmp_path):
    (tmp_path / "x.png").write_text("this is not a png\n")
    path = _write(tmp_path, _sim_with(textures__obstacle={"file": "x.png"}))
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert str(path.resolve()) in msg
    assert "textures.obstacle.file" in msg
    assert "x.png" in msg


def test_invalid_yaml(tmp_path):
    path = _write(tmp_path, "name: broken\ntextures: {floor: [1, 2\nlight: x: y\n", name="broken.yaml")
    with pytest.raises(ProfileError) as exc:
        load_profile(path)
    msg = str(exc.value)
    assert str(path.resolve()) in msg
    assert "YAML" in msg


def test_profile_not_a_mapping(tmp_path):
    path = _write(tmp_path, "- just\n- a list\n", name="list.yaml")
    with pytest.raises(ProfileError, match="mapping") as exc:
        load_profile(path)
    assert str(path.resolve()) in str(exc.value)


def test_errors_come_before_any_rendering(tmp_path, monkeypatch):
    """A bad profile fails in load_profile/make before a PyBullet client is ever opened."""
    import sim2real_goggles.envs.scene as scene

    def no_pybullet(*args, **kwargs):
        raise AssertionError("a PyBullet client was opened for an invalid profile")

    monkeypatch.setattr(scene.pb, "connect", no_pybullet)
    path = _write(tmp_path, _sim_with(sensor={"noise_std": "high"}))
    with pytest.raises(ProfileError, match="sensor.noise_std"):
        load_profile(path)
    with pytest.raises(ProfileError, match="sensor.noise_std"):
        gym.make(ENV_ID, profile=str(path), image_size=32)
    with pytest.raises(ProfileError, match="no_such_look"):
        gym.make(ENV_ID, profile="no_such_look", image_size=32)
