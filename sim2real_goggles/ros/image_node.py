"""The skeleton of a node that turns camera frames into outputs with a network.

:class:`ImageNode` subscribes ``image`` (sensor_msgs/Image) and, with the parameter
``subscribe_compressed``, ``image/compressed``; converts each message on the executor thread
(cheap, and a bad message is rejected at once without displacing a good frame); hands the newest
frame to a :class:`~sim2real_goggles.ros.common.LatestFrameWorker` whose thread runs the
subclass's :meth:`ImageNode.process`; and reports on ``/diagnostics``. Subclasses declare their
own parameters, load their network, create publishers and then call :meth:`ImageNode.start`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rclpy.node import Node
from rclpy.publisher import Publisher
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from sim2real_goggles.data.image_msgs import ImageMessageError
from sim2real_goggles.pretrained import resolve
from sim2real_goggles.ros.common import (
    DiagnosticsPublisher,
    LatencyStats,
    LatestFrameWorker,
    RateLimitedLog,
    StartupError,
    declare,
    image_qos,
)
from sim2real_goggles.ros.image_conversion import ImageConverter
from sim2real_goggles.translation import resolve_device

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Frame:
    """One camera frame on its way through the node."""

    rgb: np.ndarray
    """(H, W, 3) uint8 RGB."""
    header: Header
    """The input's header, given unchanged to every output."""
    received: float
    """``time.monotonic()`` when the message arrived."""


class NonFiniteOutputError(RuntimeError):
    """A network produced NaN or inf (damaged weights, fp16 overflow)."""


def guard_finite(model: torch.nn.Module, what: str) -> Any:
    """Make ``model`` raise :class:`NonFiniteOutputError` when its output is not finite.

    A forward hook sees the float output before any conversion to uint8 or argmax would hide
    the NaNs in plausible-looking pixels. Returns the hook handle.
    """

    def check(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        _require_finite(output, what)

    return model.register_forward_hook(check)


def _require_finite(output: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(output).all()):
        raise NonFiniteOutputError(f"{what} holds NaN or inf")


def finite_checked(fn: Callable[[torch.Tensor], torch.Tensor], what: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` raising :class:`NonFiniteOutputError` when its output is not finite: the check of
    :func:`guard_finite` for runtimes without forward hooks (ONNX Runtime, TorchScript, graphs)."""

    def checked(x: torch.Tensor) -> torch.Tensor:
        y = fn(x)
        _require_finite(y, what)
        return y

    return checked


def checkpoint_error(spec: str, exc: Exception) -> StartupError:
    """``checkpoint 'SPEC': problem`` from a loader's error, without repeating the path."""
    text = str(exc)
    prefixes = {str(spec)}
    try:
        prefixes.add(str(resolve(spec)))
    except (FileNotFoundError, ValueError):
        pass
    for prefix in sorted(prefixes, key=len, reverse=True):
        if text.startswith(prefix + ": "):
            text = text[len(prefix) + 2 :]
            break
    return StartupError(f"checkpoint {spec!r}: {text}")


class ImageNode(Node):
    """Base of the translator and segmenter nodes (see the module docstring).

    Subclasses implement :meth:`setup` (declare parameters, load the network, create publishers,
    then call :meth:`start`) and :meth:`process`. Parameters declared here: ``qos``,
    ``qos_depth``, ``subscribe_compressed``; :meth:`declare_device` adds ``device`` and ``fp16``.
    """

    def __init__(self, node_name: str, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.worker = LatestFrameWorker(self._run, on_error=self._on_error, name=f"{node_name}-worker")
        self.diagnostics: DiagnosticsPublisher | None = None
        self.errors = RateLimitedLog(self.get_logger())
        self.stats = LatencyStats()
        self.received = 0
        self.rejected = 0
        try:
            self.converter = ImageConverter()
            self.qos = image_qos(self)
            self.subscribe_compressed = declare(
                self,
                "subscribe_compressed",
                False,
                "also subscribe image/compressed (sensor_msgs/CompressedImage, JPEG or PNG)",
                read_only=True,
            )
            self.setup()
        except BaseException:
            # Free the node's DDS entities now, while the context lives: a half-built node left
            # to the garbage collector may be torn down after rclpy, which can crash the exit.
            self.destroy_node()
            raise

    def declare_device(self) -> tuple[torch.device, bool]:
        """Declare ``device`` and ``fp16``; the resolved device and whether to run in fp16.

        fp16 defaults to true exactly when the resolved device is CUDA (half precision is what
        makes a GPU fast, and CPUs gain nothing from it); true on a CPU is a start-up error.
        """
        device = declare(
            self,
            "device",
            "auto",
            "where the network runs: auto (CUDA when present, else CPU), cpu or cuda",
            read_only=True,
            choices=DEVICES,
        )
        try:
            resolved = resolve_device(device)
        except ValueError as exc:
            raise ValueError(f"parameter device: {exc}") from None
        fp16 = declare(
            self,
            "fp16",
            resolved.type == "cuda",
            "half-precision inference; default true on CUDA, false on CPU (where true is an error)",
            read_only=True,
        )
        if fp16 and resolved.type != "cuda":
            raise ValueError(f"parameter fp16: half precision needs a CUDA device, the device is {resolved}")
        return resolved, bool(fp16)

    def start(self, hardware_id: str) -> None:
        """Start the worker, the subscriptions and the diagnostics; call it last in ``__init__``
        (the node is discoverable from here on, so everything it needs must exist)."""
        self.worker.start()
        self.create_subscription(Image, "image", self._on_image, self.qos)
        if self.subscribe_compressed:
            self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, self.qos)
        self.diagnostics = DiagnosticsPublisher(
            self, f"{self.get_name()}: {self.get_fully_qualified_name()}", hardware_id, values=self.diagnostic_values
        )

    # -- to override --------------------------------------------------------------------------

    def setup(self) -> None:
        """Declare parameters, load the network, create publishers, then call :meth:`start`."""
        raise NotImplementedError

    def process(self, frame: Frame) -> None:
        """Run the network on ``frame`` and publish the outputs (on the worker thread)."""
        raise NotImplementedError

    def extra_diagnostics(self) -> dict[str, Any]:
        """Key/values added to the diagnostics (device, checkpoint, ...)."""
        return {}

    def accept(self, frame: Frame) -> bool:
        """Called on the executor thread for every valid frame before it is handed to the
        worker; False keeps it from the worker (the policy node's watchdog and enable switch)."""
        return True

    # -- machinery ----------------------------------------------------------------------------

    def diagnostic_values(self) -> dict[str, Any]:
        stats = self.stats.snapshot()
        return {
            "fps": stats["fps"],
            "frames": stats["frames"],
            "latency_p50_ms": stats["latency_p50_ms"],
            "latency_p95_ms": stats["latency_p95_ms"],
            "stamp_latency_p50_ms": stats.get("stamp_latency_p50_ms", float("nan")),
            "stamp_latency_p95_ms": stats.get("stamp_latency_p95_ms", float("nan")),
            "received": self.received,
            "dropped": self.worker.dropped,
            "rejected": self.rejected,
            "failed": self.worker.failed,
            "image_backend": self.converter.backend,
            **self.extra_diagnostics(),
        }

    def _accept(self, msg: Image | CompressedImage, topic: str, compressed: bool) -> None:
        received = time.monotonic()
        self.received += 1
        try:
            rgb = self.converter.compressed_to_rgb(msg) if compressed else self.converter.imgmsg_to_rgb(msg)
        except Exception as exc:  # noqa: BLE001 - whatever a message holds, the node keeps serving
            self.rejected += 1
            kind = "bad" if isinstance(exc, ImageMessageError) else "unreadable"
            self.errors.error(f"{kind} {topic}", f"{kind} message on {topic}, dropped: {exc}")
            return
        frame = Frame(rgb, msg.header, received)
        if self.accept(frame):
            self.worker.submit(frame)

    def _on_image(self, msg: Image) -> None:
        self._accept(msg, "image", compressed=False)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._accept(msg, "image/compressed", compressed=True)

    def _run(self, frame: Frame) -> None:
        self.process(frame)
        self.stats.record(time.monotonic() - frame.received)
        stamp = frame.header.stamp
        if stamp.sec or stamp.nanosec:  # an unset stamp says nothing about latency
            now_ns = self.get_clock().now().nanoseconds
            self.stats.record((now_ns - (stamp.sec * 10**9 + stamp.nanosec)) / 1e9, "stamp_latency")
        self.stats.frame()

    def _on_error(self, exc: BaseException) -> None:
        self.errors.error(type(exc).__name__, f"frame dropped: {type(exc).__name__}: {exc}")

    def publish(self, publisher: Publisher, msg: Any) -> None:
        """Publish unless the node is shutting down (the worker may finish a frame meanwhile)."""
        if self.context.ok():
            publisher.publish(msg)

    def destroy_node(self) -> None:
        self.worker.stop()
        super().destroy_node()


__all__ = ["DEVICES", "Frame", "ImageNode", "NonFiniteOutputError", "checkpoint_error", "guard_finite"]
