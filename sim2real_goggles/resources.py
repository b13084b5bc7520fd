"""Where the package's data (config/, sim/, launch/) lives, however it was installed.

A source checkout or editable install reads the files beside the package; a wheel or
``colcon``/ament install reads them from ``<prefix>/share/sim2real_goggles`` (the setup.py
data_files), which is also what ``ament_index_python`` reports on a ROS 2 install.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "sim2real_goggles"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """Root that holds config/, sim/ and launch/."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "package.xml").is_file() and (checkout / "config").is_dir():
        return checkout
    prefix_share = Path(sys.prefix) / "share" / PACKAGE
    if (prefix_share / "config").is_dir():
        return prefix_share
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # noqa: BLE001 - any failure means "not found" here
        raise FileNotFoundError(
            f"cannot find the {PACKAGE} data folder (config/, sim/): looked beside the package "
            f"({checkout}), in {prefix_share} and in the ament index ({exc})"
        ) from exc


def share_path(*parts: str) -> Path:
    """A path below the data root, e.g. ``share_path('config', 'profiles')``."""
    return share_dir().joinpath(*parts)
