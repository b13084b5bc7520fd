"""ament_python package: installs with colcon on a ROS 2 machine and with pip anywhere."""

from glob import glob
from os.path import dirname, isfile

from setuptools import find_packages, setup

PACKAGE = "sim2real_goggles"


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries that keep the folder structure below share/<package>/."""
    entries: dict[str, list[str]] = {}
    for path in sorted(glob(f"{folder}/**/*", recursive=True)):
        if isfile(path) and "__pycache__" not in path:
            entries.setdefault(f"share/{PACKAGE}/{dirname(path)}", []).append(path)
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    description="VR-Goggles for robots: real-to-sim image translation for sim-trained policies, on ROS 2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["tests", "tests.*"]),
    package_data={PACKAGE: ["py.typed", "pretrained/manifest.yaml", "pretrained/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *tree("launch"),
        *tree("config"),
        *tree("sim"),
    ],
    install_requires=[
        "torch==2.13.0",
        "numpy",
        "gymnasium>=1.0",
        "pybullet>=3.2.6",
        "opencv-python-headless",
        "scikit-image>=0.22",
        "scipy",
        "pyyaml",
        "tqdm",
        "tensorboard",
        "matplotlib",
        "setuptools",
        "stable-baselines3>=2.3",
    ],
    extras_require={
        "ros": [
            "ros-rclpy[fastrtps]",
            "ros-sensor-msgs",
            "ros-std-msgs",
            "ros-std-srvs",
            "ros-geometry-msgs",
            "ros-nav-msgs",
            "ros-diagnostic-msgs",
            "ros-builtin-interfaces",
            "rosbags",
        ],
        "export": ["onnx", "onnxruntime"],
        "dev": ["pytest>=8", "pytest-timeout", "ruff", "onnx", "onnxruntime", "mcap", "mcap-ros2-support"],
    },
    zip_safe=False,
    entry_points={
        "console_scripts": [
            "goggles = sim2real_goggles.cli:main",
            "translator_node = sim2real_goggles.ros.translator_node:main",
            "segmenter_node = sim2real_goggles.ros.segmenter_node:main",
            "policy_node = sim2real_goggles.ros.policy_node:main",
            "sim_robot_node = sim2real_goggles.ros.sim_robot_node:main",
        ],
    },
)
