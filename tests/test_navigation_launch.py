"""End to end: `goggles launch navigation` drives the simulated robot to the chair over real DDS,
with every node in its own process, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ros_harness import wait_until

GOGGLES = str(Path(sys.executable).parent / "goggles")


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc), children of children included."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _summary(output: str) -> dict:
    line = next(line for line in output.splitlines() if "SUMMARY " in line)
    return json.loads(line.split("SUMMARY ", 1)[1])


@pytest.mark.slow
def test_navigation_launch_reaches_the_target_behind_the_goggles():
    """The shipped policy behind the shipped goggles, in the real_lab look: the robot reaches
    the chair in at least one of two seeded rooms, and the launch ends with the robot. Rooms 45
    and 46 are ones the policy behind the goggles solved in 3 of 3 and 3 of 3 in-process runs
    with different sampling seeds (in 36-109 and 24-26 steps); DDS timing makes a launch never
    replay exactly, so the test asks for one success of two."""
    args = ["profile:=real_lab", "episodes:=2", "seed:=45", "real_time_factor:=2.0", "device:=cpu"]
    done = subprocess.run(
        [GOGGLES, "launch", "navigation", *args], capture_output=True, text=True, timeout=240, env=dict(os.environ)
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    summary = _summary(out)
    assert summary["episodes"] == 2
    assert summary["successes"] >= 1, out[-4000:]
    assert summary["latency_mean_ms"] is not None  # commands came back through translator and policy
    for node in ("[sim_robot]", "[translator]", "[policy]"):
        assert node in out, f"{node} did not run:\n{out[-3000:]}"


@pytest.mark.slow
def test_ctrl_c_stops_the_whole_navigation_graph():
    proc = subprocess.Popen(
        [GOGGLES, "launch", "navigation", "profile:=real_lab", "device:=cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
        start_new_session=True,
    )
    try:
        # wait until three nodes run and the robot is being driven (the policy has loaded)
        wait_until(lambda: len(_descendants(proc.pid)) >= 3, 60.0, "the three nodes to start")
        nodes = _descendants(proc.pid)
        time.sleep(8.0)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode in (0, 130), out[-3000:]
        wait_until(lambda: not any(_alive(p) for p in nodes), 10.0, "every node process to end")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
