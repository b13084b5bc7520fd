"""``translator_node``: the goggles as a ROS 2 node, camera image -> sim-looking image.

Subscribes ``image`` (sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3, any row
padding) and, with ``subscribe_compressed``, ``image/compressed``; publishes
``image_translated`` (rgb8 or bgr8) with the input's header (stamp and frame_id) unchanged, so
downstream nodes can pair it with other data from the same instant. Inference runs on a worker
thread on the newest frame only; frames that arrive while it is busy replace each other and are
counted as dropped (``/diagnostics``). Bad messages and non-finite network output are logged
(rate-limited) and dropped; the node keeps serving.

Parameters (all read at start-up): ``checkpoint``, ``device``, ``fp16``, ``backend``,
``threads``, ``resize``,
``output_encoding``, ``qos``, ``qos_depth``, ``subscribe_compressed``; see ``ros2 param
describe translator_node <name>``.
"""

from __future__ import annotations

import sys
from typing import Any

from sensor_msgs.msg import Image

from sim2real_goggles.inference import BACKENDS, BackendUnavailable
from sim2real_goggles.models.checkpoint import CheckpointError
from sim2real_goggles.ros.common import declare, run_node
from sim2real_goggles.ros.image_node import Frame, ImageNode, checkpoint_error, finite_checked
from sim2real_goggles.translation import Translator


class TranslatorNode(ImageNode):
    """``image`` -> ``image_translated`` through a generator checkpoint."""

    def __init__(self, **kwargs: Any):
        super().__init__("translator_node", **kwargs)

    def setup(self) -> None:
        self.checkpoint = declare(
            self,
            "checkpoint",
            "pretrained:vr_goggles",
            "translator checkpoint: a file or pretrained:NAME (see `goggles pretrained list`)",
            read_only=True,
        )
        device, fp16 = self.declare_device()
        resize = declare(
            self,
            "resize",
            True,
            "scale images to the checkpoint's training size for inference and back (a generator "
            "sees pixels at the scale it was trained on); false: translate at full size",
            read_only=True,
        )
        backend = declare(
            self,
            "backend",
            "eager",
            "inference runtime (same translation, different speed; see `goggles bench translator`): "
            "eager, channels_last, compile, torchscript, onnxruntime (CPU only), cuda_graph (CUDA only)",
            read_only=True,
            choices=BACKENDS,
        )
        threads = declare(
            self,
            "threads",
            0,
            "CPU threads for inference; 0 keeps PyTorch's default",
            read_only=True,
            range=(0, 256),
        )
        self.output_encoding = declare(
            self,
            "output_encoding",
            "rgb8",
            "encoding of image_translated",
            read_only=True,
            choices=("rgb8", "bgr8"),
        )
        try:
            self.translator = Translator.load(
                self.checkpoint, device=device, half=fp16, resize=resize, backend=backend, threads=threads or None
            )
        except CheckpointError as exc:
            raise checkpoint_error(self.checkpoint, exc) from None
        except BackendUnavailable as exc:
            raise ValueError(f"parameter backend: {exc}") from None
        self.translator.runner = finite_checked(self.translator.runner, "translator output")
        self.publisher = self.create_publisher(Image, "image_translated", self.qos)
        self.start(hardware_id=str(self.translator.device))
        self.get_logger().info(
            f"translating image -> image_translated with {self.checkpoint} on {self.translator.device}"
            f"{' (fp16)' if self.translator.half else ''}, backend {backend}, resize={resize}, input scale {self.translator.input_scale:g}, image backend {self.converter.backend}"
        )

    def process(self, frame: Frame) -> None:
        translated = self.translator(frame.rgb)
        self.publish(self.publisher, self.converter.rgb_to_imgmsg(translated, frame.header, self.output_encoding))

    def extra_diagnostics(self) -> dict[str, Any]:
        return {
            "device": str(self.translator.device),
            "fp16": self.translator.half,
            "backend": self.translator.backend,
            "checkpoint": self.checkpoint,
            "output_encoding": self.output_encoding,
        }


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node(TranslatorNode, args, name="translator_node"))


if __name__ == "__main__":
    main()


__all__ = ["TranslatorNode", "main"]
