"""policy_node and sim_robot_node over real DDS, each in a process of its own."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch
from geometry_msgs.msg import Twist, TwistStamped
from nav_msgs.msg import Odometry
from ros_harness import (
    SENSOR_QOS,
    NodeProcess,
    RosProbe,
    header,
    image_msg,
    malformed_messages,
    run_to_exit,
    stamp_ns,
    wait_until,
)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger

from sim2real_goggles.models.checkpoint import save_checkpoint
from sim2real_goggles.models.networks import PolicyNet
from sim2real_goggles.ros.policy_node import action_to_twist, clamp_twist


@pytest.fixture(scope="module")
def policy_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("policy") / "policy.pt"
    return str(save_checkpoint(path, PolicyNet(width=8), "policy_cnn", {"width": 8}, {"image_size": 64}))


def test_twist_mapping_and_clamp():
    assert action_to_twist(0, 0.4, 1.0) == (0.4, 0.0)
    assert action_to_twist(1, 0.4, 1.0) == (0.0, 1.0)
    assert action_to_twist(2, 0.4, 1.0) == (0.0, -1.0)
    assert clamp_twist(0.4, -3.0, 0.25, 1.5) == (0.25, -1.5)
    assert clamp_twist(float("nan"), 0.3, 1.0, 1.0) == (0.0, 0.0)
    assert clamp_twist(0.1, float("inf"), 1.0, 1.0) == (0.0, 0.0)


def _call(ros: RosProbe, srv_type, name: str, request, timeout: float = 10.0):
    client = ros.node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
    future = client.call_async(request)
    wait_until(future.done, timeout, f"the reply of {name}")
    return future.result()


def _frame(i: int) -> Image:
    rgb = np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return image_msg(rgb, "rgb8", hdr=header(f"cam{i}"))


def test_policy_node_commands_are_clamped_stamped_and_stop_on_watchdog(policy_ckpt):
    # 0.6 s: with 0.3 s a stall of the node on a loaded machine mid-stream (frames every 50 ms)
    # fired the watchdog's stop before the stream ended (seen once in a fresh-clone run)
    watchdog = 0.6
    params = {"policy": policy_ckpt, "max_linear": 0.25, "max_angular": 0.5, "timeout": watchdog, "device": "cpu"}
    with (
        RosProbe() as ros,
        NodeProcess("policy_node", params, ros=ros, subscribes=["image"], publishes=["cmd_vel"]) as node,
    ):
        pub = ros.publisher(Image, "image", SENSOR_QOS)
        cmds = ros.subscribe(Twist, "cmd_vel")
        stamped = ros.subscribe(TwistStamped, "cmd_vel_stamped")
        ros.wait_matched(pub)
        ros.wait_matched(cmds)
        sent = {}
        for i in range(30):
            msg = _frame(i)
            sent[stamp_ns(msg.header)] = msg.header.frame_id
            last_sent_ns = time.time_ns()
            pub.publish(msg)
            time.sleep(0.05)
        # a stop published before the stream (the watchdog also counts from start-up) does not count
        streamed = len(cmds.messages)
        cmds.wait_for(lambda m: m.linear.x == 0.0 and m.angular.z == 0.0, 2.0, since=streamed)
        # when the node published the stop: its own stamp (wall clock, as the frames'), so a stall of
        # this test process in receiving it does not count against the node (one of 0.4 s was seen
        # in a CI run); the node's timer runs every 50 ms
        stamped_stop = stamped.wait_for(lambda m: m.header.frame_id == "" and stamp_ns(m.header) > last_sent_ns, 2.0)
        assert (stamped_stop.twist.linear.x, stamped_stop.twist.angular.z) == (0.0, 0.0)
        delay = (stamp_ns(stamped_stop.header) - last_sent_ns) / 1e9
        assert delay <= watchdog + 0.1, f"stop published {delay:.3f} s after the last image"
        answers = [m for m in stamped.messages if stamp_ns(m.header) in sent]
        assert len(answers) >= 10
        assert stamped.messages.index(stamped_stop) > stamped.messages.index(answers[-1]), "the stop ends the stream"
        for m in answers:  # the image's header travels with the command it caused
            assert m.header.frame_id == sent[stamp_ns(m.header)]
            v, w = m.twist.linear.x, m.twist.angular.z
            assert (v, w) in {(0.25, 0.0), (0.0, 0.5), (0.0, -0.5)}, (v, w)
        node.check_alive()


def test_policy_node_enable_service_and_bad_messages(policy_ckpt):
    params = {"policy": policy_ckpt, "timeout": 5.0, "device": "cpu"}
    with (
        RosProbe() as ros,
        NodeProcess("policy_node", params, ros=ros, subscribes=["image"], publishes=["cmd_vel"]) as node,
    ):
        pub = ros.publisher(Image, "image", SENSOR_QOS)
        stamped = ros.subscribe(TwistStamped, "cmd_vel_stamped")
        ros.wait_matched(pub)
        ros.wait_matched(stamped)
        assert _call(ros, SetBool, "enable", SetBool.Request(data=False)).success
        stamped.wait_for(lambda m: m.twist.linear.x == 0.0 and m.twist.angular.z == 0.0)
        for i in range(5):
            pub.publish(_frame(100 + i))
            time.sleep(0.05)
        stamped.expect_none(lambda m: m.header.frame_id.startswith("cam10"), duration=0.5)
        assert _call(ros, SetBool, "enable", SetBool.Request(data=True)).success
        # malformed images are dropped, the node keeps serving
        for msg in malformed_messages(200, seed=1):
            pub.publish(msg)
        msg = _frame(7)
        wait_until(lambda: pub.publish(msg) or any(m.header.frame_id == "cam7" for m in stamped.messages), 5.0, "cmd")
        node.check_alive()
        assert "dropped" in node.output()


def _counting_policy(path) -> str:
    """A recurrent policy that drives forward on an episode's first frame and turns left on
    every later one, whatever it sees: its memory counts the frames since the last reset."""
    net = PolicyNet(width=8, memory=1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        gru = net.memory
        gru.bias_ih_l0[1] = 0.0  # update gate z = sigmoid(0) = 0.5
        gru.bias_ih_l0[2] = 10.0  # candidate tanh(10) = 1: h = 0.5, 0.75, 0.875, ...
        net.action_head.weight[0, 0] = -20.0  # forward logit 12 - 20 h: 2 at h = 0.5, then < 0
        net.action_head.bias[0] = 12.0
    return str(save_checkpoint(path, net, "policy_cnn", {"width": 8, "memory": 1}, {"image_size": 64}))


@pytest.mark.parametrize("ensemble", [False, True], ids=["single", "ensemble"])
def test_policy_node_forgets_its_memory_at_each_new_episode(tmp_path, ensemble):
    policy = _counting_policy(tmp_path / "count.pt")
    if ensemble:  # two copies: the same actions, through the ensemble's per-member memories
        from sim2real_goggles.training.policy import write_ensemble

        policy = str(write_ensemble([policy, policy], tmp_path / "ensemble.pt"))
    params = {"policy": policy, "timeout": 5.0, "device": "cpu", "sample": False}
    with (
        RosProbe() as ros,
        NodeProcess(
            "policy_node", params, ros=ros, subscribes=["image", "episode_event"], publishes=["cmd_vel"]
        ) as node,
    ):
        pub = ros.publisher(Image, "image", SENSOR_QOS)
        events = ros.publisher(String, "episode_event")
        stamped = ros.subscribe(TwistStamped, "cmd_vel_stamped")
        ros.wait_matched(pub)
        ros.wait_matched(events)
        ros.wait_matched(stamped)

        def drive(i: int) -> str:
            """The command the next frame the node acts on gets (best effort: a frame lost on
            the way is sent again, under a new name, until one is answered)."""
            names: set[str] = set()
            for attempt in range(5):
                msg = _frame(i)
                msg.header.frame_id = f"cam{i}.{attempt}"
                names.add(msg.header.frame_id)
                since = len(stamped.messages)
                pub.publish(msg)
                try:
                    cmd = stamped.wait_for(lambda m: m.header.frame_id in names, 2.0, since=since)
                except AssertionError:
                    continue
                time.sleep(0.2)  # a late answer to an earlier attempt comes before the next step
                return "forward" if cmd.twist.linear.x > 0 else "turn"
            raise AssertionError(f"no command for frame {i} in 5 attempts")

        assert [drive(i) for i in range(3)] == ["forward", "turn", "turn"]
        # mid-episode events and garbage change nothing; a start makes it forget
        for text in ('{"event": "collision", "episode": 0}', "{not json", ""):
            events.publish(String(data=text))
        time.sleep(0.3)
        assert drive(3) == "turn"
        events.publish(String(data='{"event": "start", "episode": 1, "seed": 1}'))
        time.sleep(0.3)
        assert [drive(i) for i in range(4, 6)] == ["forward", "turn"]
        events.publish(String(data="start"))  # a plain word from any driver
        time.sleep(0.3)
        assert drive(6) == "forward"
        node.check_alive()
        assert "not a JSON object" in node.output()


def test_policy_node_bad_checkpoint_fails_at_start(tmp_path):
    missing = tmp_path / "nope.pt"
    done = run_to_exit("policy_node", {"policy": str(missing)})
    assert done.returncode != 0
    assert "nope.pt" in done.stderr and "Traceback" not in done.stderr


def test_sim_robot_publishes_camera_odom_and_moves(tmp_path):
    params = {
        "profile": "real_lab",
        "seed": 3,
        "real_time_factor": 2.0,
        "publish_sim_image": True,
        "publish_segmentation": True,
    }
    with (
        RosProbe() as ros,
        NodeProcess(
            "sim_robot_node", params, ros=ros, publishes=["camera/image_raw", "odom"], subscribes=["cmd_vel"]
        ) as node,
    ):
        images = ros.subscribe(Image, "camera/image_raw", SENSOR_QOS)
        infos = ros.subscribe(CameraInfo, "camera/camera_info", SENSOR_QOS)
        sims = ros.subscribe(Image, "camera/image_sim", SENSOR_QOS)
        segs = ros.subscribe(Image, "camera/segmentation_gt", SENSOR_QOS)
        odom = ros.subscribe(Odometry, "odom")
        events = ros.subscribe(String, "episode_event")
        cmd = ros.publisher(Twist, "cmd_vel")
        ros.wait_matched(cmd)
        img = images.wait_for(timeout=10.0)
        assert (img.height, img.width, img.encoding, img.header.frame_id) == (64, 64, "rgb8", "camera")
        info = infos.wait_for(lambda m: stamp_ns(m.header) == stamp_ns(img.header))
        assert (info.width, info.height) == (64, 64) and info.k[0] > 0
        sim = sims.wait_for(lambda m: stamp_ns(m.header) == stamp_ns(img.header))
        seg = segs.wait_for(lambda m: stamp_ns(m.header) == stamp_ns(img.header))
        assert sim.encoding == "rgb8" and seg.encoding == "mono8"
        assert set(np.frombuffer(bytes(seg.data), np.uint8)) <= {0, 1, 2, 3, 255}

        def pose() -> tuple[float, float, float]:
            m = odom.wait_for(timeout=5.0) and odom.messages[-1]
            q = m.pose.pose.orientation
            return m.pose.pose.position.x, m.pose.pose.position.y, 2 * math.atan2(q.z, q.w)

        time.sleep(0.3)
        start = pose()
        time.sleep(0.5)  # no command: the robot stands still
        assert np.allclose(pose(), start, atol=1e-6)
        twist = Twist()
        twist.angular.z = 1.0  # turning in place never collides
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            cmd.publish(twist)
            time.sleep(0.05)
        turned = math.atan2(math.sin(pose()[2] - start[2]), math.cos(pose()[2] - start[2]))
        # 1 wall second at real-time factor 2 is 2 sim seconds at 1 rad/s: at most 2 rad (plus
        # the command timeout), turning left; a delivery hiccup on a loaded machine may cost some
        assert 0.5 <= turned <= 2.0 + 0.5 + 0.1, turned
        assert _call(ros, Trigger, "reset", Trigger.Request()).success
        ev = [json.loads(events.wait_for(lambda m, k=k: json.loads(m.data)["event"] == k).data) for k in ("reset",)]
        assert ev[0]["seed"] == 3
        events.wait_for(lambda m: json.loads(m.data)["event"] == "start" and json.loads(m.data)["seed"] == 4)
        node.check_alive()


def test_sim_robot_exits_after_its_episodes_with_a_summary():
    params = {"profile": "sim", "episodes": 1, "max_episode_time": 2.0, "real_time_factor": 4.0}
    done = run_to_exit("sim_robot_node", params, timeout=60.0)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "timeout" in out and "SUMMARY" in out
    summary = json.loads(out.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["episodes"] == 1 and summary["successes"] == 0
    assert summary["results"][0]["outcome"] == "timeout"


@pytest.mark.slow
def test_bench_pipeline_reports_rate_delivery_and_latency(policy_ckpt, capsys):
    from sim2real_goggles.cli import main

    code = main(
        [
            "bench",
            "pipeline",
            "--json",
            "--seconds",
            "2",
            "--translator",
            "pretrained:cyclegan",
            "--policy",
            policy_ckpt,
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("rate_hz", "frames_sent", "frames_acted", "delivered_ratio", "p50_ms", "p95_ms"):
        assert key in result, key
    assert result["rate_hz"] == 30.0
    assert 50 <= result["frames_sent"] <= 70  # 2 s at 30 Hz
    # commands came back through both nodes; how many of the 30 Hz frames get one depends on the
    # machine's load (a loaded 2-core CI run delivered 48%), which is the benchmark's figure to
    # report, not this test's to judge
    assert 0 < result["frames_acted"] <= result["frames_sent"]
    assert result["delivered_ratio"] == round(result["frames_acted"] / result["frames_sent"], 4)
    assert 0 < result["p50_ms"] <= result["p95_ms"]
    assert result["reference_no_translator"]["frames_acted"] > 0
