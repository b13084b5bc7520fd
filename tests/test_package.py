"""Package shape: ROS 2 manifest, install layout, lint."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_package_xml_is_ament_python_with_the_ros_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "sim2real_goggles"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    for dep in (
        "rclpy",
        "sensor_msgs",
        "geometry_msgs",
        "nav_msgs",
        "std_msgs",
        "std_srvs",
        "diagnostic_msgs",
        "cv_bridge",
    ):
        assert dep in deps


def test_setup_cfg_puts_executables_where_ros2_run_looks():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert cfg["develop"]["script_dir"] == "$base/lib/sim2real_goggles"
    assert cfg["install"]["install_scripts"] == "$base/lib/sim2real_goggles"
    assert (ROOT / "resource" / "sim2real_goggles").is_file()


def test_data_files_install_profiles_sim_and_manifest():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy, setuptools; setuptools.setup = lambda **kw: print(repr(kw['data_files'])); runpy.run_path('setup.py')",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    data_files = dict(eval(proc.stdout))  # noqa: S307 - our own setup.py's repr
    assert "resource/sim2real_goggles" in data_files["share/ament_index/resource_index/packages"]
    assert "package.xml" in data_files["share/sim2real_goggles"]
    assert "config/profiles/real_lab.yaml" in data_files["share/sim2real_goggles/config/profiles"]
    assert "sim/chair.urdf" in data_files["share/sim2real_goggles/sim"]


def test_import_registers_the_env():
    import gymnasium as gym

    import sim2real_goggles

    assert "Goggles/NavToTarget-v0" in sim2real_goggles.ENV_IDS
    assert gym.spec("Goggles/NavToTarget-v0").max_episode_steps == 400


def test_ruff_lint_and_format_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff not installed (it is in the [dev] extra)")
    lint = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([ruff, "format", "--check", str(ROOT)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
