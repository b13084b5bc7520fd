"""goggles launch: the shipped YAML launch files, the frontend subset it accepts, and how it runs nodes.

Running tests use a fake node (a Python script installed as ``<prefix>/lib/fake_pkg/fake_node``
and found through AMENT_PREFIX_PATH, the way ``ros2 run`` finds executables) that records its
command line and behaves as its ``-p`` parameters say.
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sim2real_goggles.cli import main
from sim2real_goggles.ros.launch_runner import (
    LaunchError,
    LaunchPlan,
    NodeSpec,
    find_launch_file,
    format_arguments,
    format_plan,
    load_launch,
    run_plan,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "launch").glob("*.launch.yaml"))
CONSOLE_SCRIPTS = {
    ep.name for ep in importlib.metadata.distribution("sim2real_goggles").entry_points if ep.group == "console_scripts"
}

FAKE_NODE = """\
#!{python}
import json, os, signal, subprocess, sys, time

argv = sys.argv[1:]
params, name = {{}}, os.path.basename(sys.argv[0])
for flag, value in zip(argv, argv[1:]):
    if flag == "-p":
        key, _, val = value.partition(":=")
        params[key] = val
    elif flag == "-r" and value.startswith("__node:="):
        name = value.split(":=", 1)[1]
record = os.environ["FAKE_RECORD_DIR"]
state = {{"argv": argv, "pid": os.getpid(), "pgid": os.getpgid(0), "marker": os.environ.get("FAKE_MARKER")}}
if params.get("spawn") == "true":
    # A grandchild that ignores SIGINT and SIGTERM: only the runner's final SIGKILL of the group stops it.
    ready = os.path.join(record, name + ".grandchild")
    code = (
        "import signal, sys, time; signal.signal(2, signal.SIG_IGN); signal.signal(15, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').close(); time.sleep(120)"
    )
    state["grandchild"] = subprocess.Popen([sys.executable, "-c", code, ready]).pid


def on_sigint(*_):
    open(os.path.join(record, name + ".sigint"), "w").close()
    sys.exit(0)


signal.signal(signal.SIGINT, signal.SIG_IGN if params.get("ignore_sigint") == "true" else on_sigint)
with open(os.path.join(record, name + ".tmp"), "w") as f:
    json.dump(state, f)
os.replace(os.path.join(record, name + ".tmp"), os.path.join(record, name + ".json"))
print(f"hello from {{name}}", flush=True)
print(f"warning from {{name}}", file=sys.stderr, flush=True)
time.sleep(float(params.get("lifetime", "120")))
sys.exit(int(params.get("exit_code", "0")))
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Install the fake node as fake_pkg/fake_node in a prefix on AMENT_PREFIX_PATH; records go to tmp/rec."""
    exe = tmp_path / "prefix" / "lib" / "fake_pkg" / "fake_node"
    exe.parent.mkdir(parents=True)
    exe.write_text(FAKE_NODE.format(python=sys.executable))
    exe.chmod(0o755)
    record = tmp_path / "rec"
    record.mkdir()
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "prefix"))
    monkeypatch.setenv("FAKE_RECORD_DIR", str(record))
    monkeypatch.delenv("FAKE_MARKER", raising=False)
    yield record
    # A failing test must not leave fake nodes behind either.
    for state_file in record.glob("*.json"):
        state = json.loads(state_file.read_text())
        for pid in (state["pid"], state.get("grandchild")):
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGKILL)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def by_label(plan: LaunchPlan) -> dict[str, NodeSpec]:
    return {n.label: n for n in plan.nodes}


def alive(pid: int) -> bool:
    """A zombie counts as gone: in a container nothing may ever reap an orphan."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rfind(")") + 2] != "Z"


def wait_for(predicate, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------------------------
# The shipped launch files
# ---------------------------------------------------------------------------------------------


def test_the_launch_files_ship():
    assert [p.name for p in SHIPPED] == [
        "navigation.launch.yaml",
        "segmentation.launch.yaml",
        "sim_robot.launch.yaml",
        "translator.launch.yaml",
    ]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_launch_file_resolves_with_its_defaults(path):
    plan = load_launch(path)
    assert plan.nodes
    for arg in plan.arguments:
        assert arg.value is not None and arg.description, arg.name
    for node in plan.nodes:
        assert node.package == "sim2real_goggles"
        assert node.executable in CONSOLE_SCRIPTS, f"{node.executable} is not a console script of the package"
        assert node.node_name == node.label
        assert node.output == "screen"
        files = [Path(p) for p in node.parameters if ":=" not in p]
        assert len(files) == 1 and files[0].parent == ROOT / "config" / "ros", node.parameters
        # Every parameter a launch file sets is one the node's parameter file documents.
        declared = yaml.safe_load(files[0].read_text())["/**"]["ros__parameters"]
        for rule in node.parameters:
            if ":=" in rule:
                assert rule.split(":=")[0] in declared, f"{path.name}: {node.label} sets unknown {rule}"


def test_parameter_files_are_ros2_parameter_files():
    expected = {
        "sim_robot.yaml": {
            "profile": "real_lab",
            "seed": 0,
            "image_size": 64,
            "camera_rate": 4.0,
            "odom_rate": 20.0,
            "real_time_factor": 1.0,
            "episodes": 0,
            "max_episode_time": 100.0,
            "publish_sim_image": False,
            "publish_segmentation": False,
            "cmd_timeout": 0.5,
        },
        "translator.yaml": {"checkpoint": "pretrained:vr_goggles", "device": "auto", "resize": True},
        "segmenter.yaml": {"checkpoint": "pretrained:segmenter", "device": "auto", "qos": "sensor_data"},
        "policy.yaml": {"policy": "pretrained:policy", "max_linear": 0.5, "max_angular": 1.5, "timeout": 0.5},
    }
    files = {p.name: p for p in (ROOT / "config" / "ros").glob("*.yaml")}
    assert set(expected) <= set(files)
    for name, values in expected.items():
        data = yaml.safe_load(files[name].read_text())
        assert list(data) == ["/**"] and list(data["/**"]) == ["ros__parameters"], name
        params = data["/**"]["ros__parameters"]
        for key, value in values.items():
            assert params[key] == value and type(params[key]) is type(value), (name, key)


@pytest.mark.parametrize(
    ("robot", "goggles", "labels"),
    [
        ("sim", "true", ["sim_robot", "translator", "policy"]),
        ("sim", "false", ["sim_robot", "policy"]),
        ("external", "true", ["translator", "policy"]),
        ("external", "false", ["policy"]),
    ],
)
def test_navigation_wires_driver_goggles_policy(robot, goggles, labels):
    camera = "/camera/color/image_raw" if robot == "external" else "/camera/image_raw"
    plan = load_launch("navigation", [f"robot:={robot}", f"goggles:={goggles}", f"camera_topic:={camera}"])
    nodes = by_label(plan)
    assert [n.label for n in plan.nodes] == labels
    assert [n.label for n in plan.nodes if n.shutdown_on_exit] == (["sim_robot"] if robot == "sim" else [])
    policy_in = "/goggles/image_translated" if goggles == "true" else camera
    assert nodes["policy"].remappings == [("image", policy_in), ("cmd_vel", "/cmd_vel")]
    if goggles == "true":
        assert nodes["translator"].remappings == [("image", camera), ("image_translated", "/goggles/image_translated")]
    if robot == "sim":
        assert nodes["sim_robot"].remappings == [("camera/image_raw", camera), ("cmd_vel", "/cmd_vel")]


def test_navigation_arguments_reach_the_nodes_typed():
    plan = load_launch(
        "navigation.launch.yaml",
        [
            "profile:=real_office",
            "episodes:=3",
            "seed:=7",
            "real_time_factor:=2.5",
            "translator:=runs/vr.pt",
            "policy:=pretrained:policy",
            "device:=cpu",
            "backend:=onnxruntime",
            "cmd_vel_topic:=/robot/cmd_vel",
            "ground_truth:=true",
        ],
    )
    nodes = by_label(plan)
    sim = nodes["sim_robot"].parameters
    assert sim[1:] == [
        "profile:=real_office",
        "seed:=7",
        "episodes:=3",
        "real_time_factor:=2.5",
        "publish_sim_image:=true",
        "publish_segmentation:=true",
    ]
    assert nodes["translator"].parameters[1:] == ["checkpoint:=runs/vr.pt", "device:=cpu", "backend:=onnxruntime"]
    assert nodes["policy"].parameters[1:] == ["policy:=pretrained:policy", "device:=cpu"]
    assert ("cmd_vel", "/robot/cmd_vel") in nodes["sim_robot"].remappings
    assert ("cmd_vel", "/robot/cmd_vel") in nodes["policy"].remappings
    cmd = nodes["policy"].command
    assert cmd[0] == str(Path(sys.executable).parent / "policy_node")
    assert cmd[1:5] == ["--ros-args", "-r", "__node:=policy", "--params-file"]
    assert cmd[-4:] == ["-r", "image:=/goggles/image_translated", "-r", "cmd_vel:=/robot/cmd_vel"]


def test_navigation_rejects_values_outside_the_choices():
    with pytest.raises(LaunchError, match=r"navigation.launch.yaml:\d+: argument 'robot' is 'gazebo'.*sim, external"):
        load_launch("navigation", ["robot:=gazebo"])


def test_unknown_argument_names_the_file_and_the_valid_ones():
    with pytest.raises(LaunchError) as exc:
        load_launch("navigation", ["goggle:=false"])
    message = str(exc.value)
    assert "navigation.launch.yaml" in message and "goggle" in message
    assert "valid: backend, camera_topic, cmd_vel_topic, device, episodes, goggles, ground_truth, policy" in message
    # translated_topic is an argument of translator.launch.yaml, but navigation sets it itself.
    with pytest.raises(LaunchError, match="unknown launch argument translated_topic"):
        load_launch("navigation", ["translated_topic:=/x"])


def test_find_launch_file_by_name_file_name_or_path(tmp_path):
    nav = ROOT / "launch" / "navigation.launch.yaml"
    assert find_launch_file("navigation") == nav
    assert find_launch_file("navigation.launch.yaml") == nav
    assert find_launch_file(str(nav)) == nav
    # ros2 launch's PACKAGE FILE form, so a ros2 launch command line works with goggles in front.
    plan = load_launch("sim2real_goggles", ["navigation.launch.yaml", "goggles:=false"])
    assert plan.file == nav and [n.label for n in plan.nodes] == ["sim_robot", "policy"]
    with pytest.raises(LaunchError, match="available: navigation, segmentation, sim_robot, translator"):
        find_launch_file("nav")
    with pytest.raises(LaunchError, match="no such launch file"):
        find_launch_file(str(tmp_path / "missing.launch.yaml"))


# ---------------------------------------------------------------------------------------------
# Substitutions, parameters, includes, groups
# ---------------------------------------------------------------------------------------------


def test_substitutions(tmp_path, monkeypatch):
    monkeypatch.setenv("GOGGLES_TEST_HOME", "/home/robot")
    monkeypatch.delenv("GOGGLES_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        "subs.launch.yaml",
        """\
launch:
- arg: {name: which, default: color}
- arg: {name: color, default: red}
- let: {name: nested, value: "$(var $(var which))"}
- let: {name: home, value: "$(env GOGGLES_TEST_HOME)/x"}
- let: {name: fallback, value: "$(env GOGGLES_TEST_UNSET fallback)"}
- let: {name: optional, value: "[$(optenv GOGGLES_TEST_UNSET)]"}
- let: {name: share, value: "$(find-pkg-share sim2real_goggles)"}
- let: {name: here, value: "$(dirname)"}
- let: {name: me, value: "$(filename)"}
- let:
    name: is_red
    value: $(eval '"$(var color)" == "red" and not "$(var which)" != "color"')
- let: {name: member, value: "$(eval '\\"$(var color)\\" in (\\"blue\\", \\"green\\")')"}
- let: {name: quoted_arg, value: "$(env GOGGLES_TEST_UNSET 'two words')"}
- let: {name: escaped, value: 'cost \\$(var color)'}
""",
    )
    config = load_launch(path, ["color:=blue"]).configurations
    assert config["nested"] == "blue"
    assert config["home"] == "/home/robot/x"
    assert config["fallback"] == "fallback"
    assert config["optional"] == "[]"
    assert (Path(config["share"]) / "launch" / "navigation.launch.yaml").is_file()
    assert config["here"] == str(tmp_path) and config["me"] == str(path)
    assert config["is_red"] == "False" and config["member"] == "True"
    assert config["quoted_arg"] == "two words"
    assert config["escaped"] == "cost $(var color)"
    assert load_launch(path).configurations["is_red"] == "True"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("$(eval '__import__(\"os\").getcwd()')", "supports only literals"),
        ("$(eval '1 +')", "not valid Python"),
        ("$(env GOGGLES_TEST_UNSET)", "environment variable 'GOGGLES_TEST_UNSET' is not set"),
        ("$(var nothing)", "launch configuration 'nothing' is not set"),
        ("$(command ls)", r"unsupported substitution \$\(command\)"),
        ("$(var x", "unterminated"),
        ("$(var  x)", "extra space"),
        ("$(find-pkg-share no_such_package_xyz)", "package 'no_such_package_xyz' not found"),
    ],
)
def test_bad_substitutions_name_file_and_line(tmp_path, monkeypatch, value, message):
    monkeypatch.delenv("GOGGLES_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        "bad.launch.yaml",
        f"launch:\n- arg: {{name: a, default: x}}\n- let:\n    name: y\n    value: {value}\n",
    )
    with pytest.raises(LaunchError, match=message) as exc:
        load_launch(path)
    assert f"{path}:" in str(exc.value)


def test_parameters_are_typed_like_ros2_launch(tmp_path, fake):
    params = write(tmp_path, "p.yaml", "/**:\n  ros__parameters: {a: 1}\n")
    path = write(
        tmp_path,
        "params.launch.yaml",
        f"""\
launch:
- arg: {{name: n, default: "42"}}
- arg: {{name: f, default: "0.5"}}
- arg: {{name: word, default: "yes please"}}
- set_parameter: {{name: use_sim_time, value: true}}
- node:
    pkg: fake_pkg
    exec: fake_node
    param:
    - {{name: literal_text, value: "007"}}
    - {{name: substituted, value: $(var n)}}
    - {{name: as_text, value: $(var n), type: str}}
    - {{name: as_float, value: $(var n), type: float}}
    - {{name: ratio, value: $(var f)}}
    - {{name: words, value: $(var word)}}
    - {{name: integer, value: 3}}
    - {{name: flag, value: false}}
    - {{name: sizes, value: [1, 2]}}
    - from: {params}
    - name: outer
      param:
      - {{name: inner, value: "$(var n)$(var n)"}}
""",
    )
    (node,) = load_launch(path).nodes
    assert node.parameters == [
        "use_sim_time:=true",
        "literal_text:='007'",
        "substituted:=42",
        "as_text:='42'",
        "as_float:=42.0",
        "ratio:=0.5",
        "words:=yes please",
        "integer:=3",
        "flag:=false",
        "sizes:=[1, 2]",
        str(params),
        "outer.inner:=4242",
    ]
    assert node.command[node.command.index(str(params)) - 1] == "--params-file"
    assert node.node_name is None and node.namespace is None and node.label == "fake_node"


def test_includes_groups_and_namespaces(tmp_path, fake):
    write(
        tmp_path,
        "child.launch.yaml",
        """\
launch:
- arg: {name: robot_name, description: required by the child}
- arg: {name: rate, default: "1.0"}
- node:
    pkg: fake_pkg
    exec: fake_node
    name: $(var robot_name)
    namespace: sensors
    param: [{name: rate, value: $(var rate)}]
- let: {name: leaked, value: from-child}
""",
    )
    parent = write(
        tmp_path,
        "parent.launch.yaml",
        """\
launch:
- group:
    children:
    - push-ros-namespace: {namespace: robot1}
    - set_env: {name: FAKE_MARKER, value: inside}
    - set_parameter: {name: use_sim_time, value: true}
    - include:
        file: $(dirname)/child.launch.yaml
        arg: [{name: robot_name, value: alpha}, {name: rate, value: "5"}]
- include:
    file: $(dirname)/child.launch.yaml
    arg: [{name: robot_name, value: beta}]
- node: {pkg: fake_pkg, exec: fake_node, name: gamma, namespace: /abs}
- group:
    scoped: false
    children:
    - push_ros_namespace: {namespace: outer}
- group:
    if: "false"
    children:
    - node: {pkg: fake_pkg, exec: fake_node, name: skipped}
- node: {pkg: fake_pkg, exec: fake_node, name: delta, unless: "0", exec_name: delta_process}
""",
    )
    plan = load_launch(parent)
    nodes = by_label(plan)
    assert list(nodes) == ["alpha", "beta", "gamma", "delta_process"]
    assert nodes["alpha"].namespace == "/robot1/sensors"
    assert nodes["alpha"].parameters == ["use_sim_time:=true", "rate:=5"]
    assert nodes["alpha"].env["FAKE_MARKER"] == "inside"
    assert nodes["alpha"].command[1:7] == ["--ros-args", "-r", "__node:=alpha", "-r", "__ns:=/robot1/sensors", "-p"]
    # The scoped group took its namespace, environment, global parameter and include arguments along.
    assert nodes["beta"].namespace == "/sensors"
    assert nodes["beta"].parameters == ["rate:=1.0"]
    assert "FAKE_MARKER" not in nodes["beta"].env
    assert nodes["gamma"].namespace == "/abs"
    assert nodes["delta_process"].namespace == "/outer" and nodes["delta_process"].node_name == "delta"
    shown = format_arguments(plan)
    assert "'rate': (from child.launch.yaml)" in shown and "robot_name" not in shown  # both includes set it
    # include is not scoped (as in ros2 launch): the second include's configurations stay set.
    assert plan.configurations["leaked"] == "from-child" and plan.configurations["robot_name"] == "beta"
    with pytest.raises(LaunchError, match=r"child.launch.yaml:2: required launch argument 'robot_name'"):
        load_launch(tmp_path / "child.launch.yaml")
    assert "robot_name" in load_launch(tmp_path / "child.launch.yaml", show_args=True).missing


BAD_FILES = [
    ("- nodee: {pkg: fake_pkg, exec: fake_node}\n", 2, "unsupported launch tag 'nodee'"),
    (
        "- node:\n    pkg: fake_pkg\n    exec: fake_node\n    respawn_delay: '1.0'\n",
        5,
        "unsupported attribute 'respawn_delay'",
    ),
    ("- arg: {name: n, default: 5}\n", 2, r"attribute 'default' of 'arg' must be a string.*quote it"),
    ("- node: {pkg: fake_pkg, exec: fake_node, respawn: 'true'}\n", 2, "respawn is not supported"),
    ("- node:\n    pkg: fake_pkg\n    exec: fake_node\n    on_exit: restart\n", 5, "on_exit must be 'shutdown'"),
    ("- node: {pkg: fake_pkg, exec: fake_node, output: own_log}\n", 2, "output 'own_log' is not supported"),
    (
        "- node: {pkg: fake_pkg, exec: no_such_exe_xyz}\n",
        2,
        "executable 'no_such_exe_xyz' of package 'fake_pkg' not found",
    ),
    ("- node: {pkg: fake_pkg, exec: fake_node, if: maybe}\n", 2, "condition 'if' must be true/false/1/0"),
    ("- let: {name: a, value: b, if: 'true', unless: 'true'}\n", 2, "'if' and 'unless' cannot be used together"),
    ("- include: {file: $(dirname)/missing.launch.yaml}\n", 2, "included launch file .*missing.launch.yaml' not found"),
    ("- include: {file: $(filename)}\n", 2, "includes itself"),
    ("- node: {pkg: fake_pkg, exec: fake_node, param: [{from: /no/such/params.yaml}]}\n", 2, "parameter file"),
    ("- node: {pkg: fake_pkg, exec: fake_node, name: 'bad-name'}\n", 2, "invalid node name 'bad-name'"),
    ("- group:\n    forwarding: 'false'\n    children: []\n", 3, "unsupported attribute 'forwarding'"),
    (
        "- arg: {name: c, default: x, choice: [{value: a}, {value: b}]}\n",
        2,
        "argument 'c' is 'x', but it must be one of: a, b",
    ),
]


@pytest.mark.parametrize(
    ("body", "line", "message"), BAD_FILES, ids=[m.split()[0] + str(i) for i, (_, _, m) in enumerate(BAD_FILES)]
)
def test_unsupported_or_wrong_launch_files_fail_with_file_and_line(tmp_path, fake, body, line, message):
    path = write(tmp_path, "bad.launch.yaml", "launch:\n" + body)
    with pytest.raises(LaunchError, match=message) as exc:
        load_launch(path)
    assert str(exc.value).startswith(f"{path}:{line}:"), str(exc.value)


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def test_cli_help_print_show_args_and_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["launch", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Example" in out and "goggles launch navigation" in out

    assert main(["launch", "navigation", "goggles:=false", "--print"]) == 0
    out = capsys.readouterr().out
    assert "[sim_robot] output=screen on_exit=shutdown" in out and "[translator]" not in out
    assert "-r image:=/camera/image_raw" in out and "goggles:=false" in out

    assert main(["launch", "navigation", "--show-args"]) == 0
    out = capsys.readouterr().out
    assert "'goggles':" in out and "no-goggles baseline" in out and "(default: 'true')" in out
    assert "'translated_topic'" not in out  # navigation sets it for translator.launch.yaml

    assert main(["launch", "navigation", "nope:=1"]) == 2
    assert "goggles launch: error:" in capsys.readouterr().err
    assert main(["launch", "navigation", "oops"]) == 2
    assert "NAME:=VALUE" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Running processes
# ---------------------------------------------------------------------------------------------


def test_run_passes_ros_args_forwards_prefixed_output_and_returns_0(tmp_path, fake):
    params = write(tmp_path, "p.yaml", "/**:\n  ros__parameters: {a: 1}\n")
    path = write(
        tmp_path,
        "talk.launch.yaml",
        f"""\
launch:
- arg: {{name: rate, default: "2.5"}}
- log: {{message: starting at rate $(var rate)}}
- node:
    pkg: fake_pkg
    exec: fake_node
    name: talker
    namespace: robot1
    on_exit: shutdown
    args: --verbose 'two words'
    env: [{{name: FAKE_MARKER, value: m-$(var rate)}}]
    param:
    - from: {params}
    - {{name: lifetime, value: 0.2}}
    - {{name: rate, value: $(var rate)}}
    - {{name: label, value: "007"}}
    remap:
    - {{from: chatter, to: /chat}}
""",
    )
    out, err = io.StringIO(), io.StringIO()
    assert run_plan(load_launch(path), stdout=out, stderr=err) == 0
    state = json.loads((fake / "talker.json").read_text())
    assert state["argv"] == [
        "--verbose",
        "two words",
        "--ros-args",
        "-r",
        "__node:=talker",
        "-r",
        "__ns:=/robot1",
        "--params-file",
        str(params),
        "-p",
        "lifetime:=0.2",
        "-p",
        "rate:=2.5",
        "-p",
        "label:='007'",
        "-r",
        "chatter:=/chat",
    ]
    assert state["marker"] == "m-2.5" and state["pgid"] == state["pid"]  # its own process group
    assert "[talker] hello from talker" in out.getvalue().splitlines()
    assert "[talker] warning from talker" in err.getvalue().splitlines()
    assert "starting at rate 2.5" in err.getvalue() and "[talker] finished cleanly" in err.getvalue()


def test_shutdown_node_exit_stops_the_others_and_sets_the_exit_code(tmp_path, fake, monkeypatch):
    path = write(
        tmp_path,
        "req.launch.yaml",
        """\
launch:
- node: {pkg: fake_pkg, exec: fake_node, name: waiter, output: log}
- node:
    pkg: fake_pkg
    exec: fake_node
    name: boss
    on_exit: shutdown
    param: [{name: lifetime, value: 0.5}, {name: exit_code, value: 3}]
""",
    )
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "logs"))  # where output: log writes
    err = io.StringIO()
    assert run_plan(load_launch(path), stdout=io.StringIO(), stderr=err, sigterm_timeout=2.0) == 3
    waiter = json.loads((fake / "waiter.json").read_text())
    assert (fake / "waiter.sigint").exists(), err.getvalue()  # stopped with SIGINT, like ros2 launch
    assert not alive(waiter["pid"])
    assert "[boss] died" in err.getvalue() and "exit code 3" in err.getvalue()
    (log,) = (tmp_path / "logs").glob("*/waiter.log")
    assert "hello from waiter" in log.read_text()


def test_a_failing_node_makes_the_launch_fail(tmp_path, fake):
    path = write(
        tmp_path,
        "fail.launch.yaml",
        """\
launch:
- node: {pkg: fake_pkg, exec: fake_node, name: crasher, param: [{name: lifetime, value: 0}, {name: exit_code, value: 1}]}
- node: {pkg: fake_pkg, exec: fake_node, name: boss, on_exit: shutdown, param: [{name: lifetime, value: 1.0}]}
""",
    )
    err = io.StringIO()
    assert run_plan(load_launch(path), stdout=io.StringIO(), stderr=err) == 1
    assert "[crasher] died" in err.getvalue() and "failed: crasher" in err.getvalue()
    assert "[boss] finished cleanly" in err.getvalue()


def _launch_subprocess(tmp_path: Path, fake: Path, body: str) -> subprocess.Popen:
    path = write(tmp_path, "run.launch.yaml", "launch:\n" + body)
    return subprocess.Popen(
        [sys.executable, "-m", "sim2real_goggles.cli", "launch", str(path), "--sigterm-timeout", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_to_the_runner_stops_every_process(tmp_path, fake, sig, code):
    names = ["calm", "stubborn", "spawner"]
    body = (
        "- node: {pkg: fake_pkg, exec: fake_node, name: calm}\n"
        "- node: {pkg: fake_pkg, exec: fake_node, name: stubborn, param: [{name: ignore_sigint, value: true}]}\n"
        "- node: {pkg: fake_pkg, exec: fake_node, name: spawner, param: [{name: spawn, value: true}]}\n"
    )
    runner = _launch_subprocess(tmp_path, fake, body)
    try:
        ready = [fake / f"{n}.json" for n in names] + [fake / "spawner.grandchild"]
        assert wait_for(lambda: all(p.exists() for p in ready))
        states = {n: json.loads((fake / f"{n}.json").read_text()) for n in names}
        pids = [s["pid"] for s in states.values()] + [states["spawner"]["grandchild"]]
        assert all(alive(pid) for pid in pids)
        runner.send_signal(sig)
        out, err = runner.communicate(timeout=20)
    finally:
        runner.kill()
    assert runner.returncode == code, err
    assert not [pid for pid in pids if alive(pid)], err
    assert (fake / "calm.sigint").exists()  # SIGINT first, as ros2 launch does
    assert "still running after SIGINT; sending SIGTERM" in err  # stubborn needed SIGTERM
    assert "sending SIGKILL" in err  # the grandchild ignores both
    assert "[calm] hello from calm" in out


def test_nodes_die_with_a_killed_runner(tmp_path, fake):
    runner = _launch_subprocess(tmp_path, fake, "- node: {pkg: fake_pkg, exec: fake_node, name: orphan}\n")
    try:
        assert wait_for(lambda: (fake / "orphan.json").exists())
        pid = json.loads((fake / "orphan.json").read_text())["pid"]
        runner.kill()
        runner.wait(timeout=10)
        assert wait_for(lambda: not alive(pid), timeout=10)
    finally:
        runner.kill()


def test_format_plan_and_arguments_of_a_plan_without_nodes(tmp_path):
    path = write(tmp_path, "empty.launch.yaml", "launch:\n- arg: {name: x, default: '1', description: the x}\n")
    plan = load_launch(path)
    assert "processes (0):" in format_plan(plan) and "x:=1" in format_plan(plan)
    assert "the x" in format_arguments(plan)
    err = io.StringIO()
    assert run_plan(plan, stdout=io.StringIO(), stderr=err) == 0
    assert "no processes to start" in err.getvalue()
