"""``segmenter_node``: per-pixel classes of camera images as a ROS 2 node.

Subscribes ``image`` (as :mod:`~sim2real_goggles.ros.translator_node`) and publishes, with the
input's header, ``segmentation`` (mono8 class ids: 0 floor, 1 wall, 2 obstacle, 3 target; see
``CLASS_NAMES``) and ``segmentation_color`` (rgb8: the class colours of
:func:`~sim2real_goggles.data.collect.colorize_mask` blended over the image). The same
newest-frame worker, diagnostics and error handling as the translator.

Parameters (read at start-up): ``checkpoint`` (default ``pretrained:segmenter``), ``device``,
``fp16``, ``resize``, ``overlay_alpha``, ``qos``, ``qos_depth``, ``subscribe_compressed``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import torch
from sensor_msgs.msg import Image

from sim2real_goggles.appearance.profile import CLASS_NAMES
from sim2real_goggles.models.checkpoint import CheckpointError, load_checkpoint
from sim2real_goggles.models.networks import SIZE_MULTIPLE
from sim2real_goggles.ros.common import declare, run_node
from sim2real_goggles.ros.image_node import Frame, ImageNode, checkpoint_error, guard_finite
from sim2real_goggles.training.segmenter import predict


class OnDevice(torch.nn.Module):
    """``model`` on ``device`` taking and returning CPU float tensors, so that
    :func:`~sim2real_goggles.training.segmenter.predict` (which feeds CPU tensors) runs it."""

    def __init__(self, model: torch.nn.Module, device: torch.device, half: bool):
        super().__init__()
        self.model = model.to(device).half() if half else model.to(device)
        self.device = device
        self.dtype = torch.float16 if half else torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device, self.dtype)).float().cpu()


def _padded(side: int) -> int:
    return -(-side // SIZE_MULTIPLE) * SIZE_MULTIPLE


def segment(model: torch.nn.Module, rgb: np.ndarray, image_size: int = 0, resize: bool = True) -> np.ndarray:
    """Class ids (H, W) uint8 of an (H, W, 3) uint8 image of any size.

    With ``resize`` the image is scaled (area filter) so its shorter side is the training
    ``image_size`` and the ids are scaled back (nearest neighbour); the U-Net's two poolings need
    sides that are multiples of 4, so the input is edge-reflected at the bottom and right and
    the ids cropped back.
    """
    h, w = rgb.shape[:2]
    img = rgb
    if resize and image_size and min(h, w) != image_size:
        scale = image_size / min(h, w)
        img = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ih, iw = img.shape[:2]
    ph, pw = _padded(ih) - ih, _padded(iw) - iw
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REFLECT_101 if min(ih, iw) > 1 else cv2.BORDER_REPLICATE)
    # writable: torch.from_numpy warns on the read-only arrays that come from message buffers
    ids = predict(model, np.require(img[None], requirements="W"))[0][:ih, :iw]
    if ids.shape != (h, w):
        ids = cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(ids)


def _colorize_mask() -> Callable[[np.ndarray], np.ndarray]:
    # The palette lives in data.collect, which imports the PyBullet env, whose library prints a
    # banner on import: imported only once the node is known to start, so that a start-up error
    # stays the one line run_node prints.
    from sim2real_goggles.data.collect import colorize_mask

    return colorize_mask


def overlay(rgb: np.ndarray, ids: np.ndarray, alpha: float) -> np.ndarray:
    """The class colours over ``rgb``: ``alpha`` 1 shows only the colours, 0 only the image."""
    return cv2.addWeighted(rgb, 1.0 - alpha, _colorize_mask()(ids), alpha, 0.0)


class SegmenterNode(ImageNode):
    """``image`` -> ``segmentation`` and ``segmentation_color`` through a segmenter checkpoint."""

    def __init__(self, **kwargs: Any):
        super().__init__("segmenter_node", **kwargs)

    def setup(self) -> None:
        self.checkpoint = declare(
            self,
            "checkpoint",
            "pretrained:segmenter",
            "segmenter checkpoint: a file or pretrained:NAME (see `goggles pretrained list`)",
            read_only=True,
        )
        self.device, self.fp16 = self.declare_device()
        self.resize = declare(
            self,
            "resize",
            True,
            "scale images to the checkpoint's training size for inference and the ids back",
            read_only=True,
        )
        self.alpha = declare(
            self,
            "overlay_alpha",
            0.5,
            "weight of the class colours in segmentation_color (0: image only, 1: colours only)",
            read_only=True,
            range=(0.0, 1.0),
        )
        try:
            ckpt = load_checkpoint(self.checkpoint)
            if ckpt.arch != "segmenter":
                raise CheckpointError(f"{ckpt.path}: holds a {ckpt.arch!r} network, not a segmenter")
            net = ckpt.build("cpu")
        except CheckpointError as exc:
            raise checkpoint_error(self.checkpoint, exc) from None
        _colorize_mask()
        guard_finite(net, "segmenter logits")
        self.model = OnDevice(net, self.device, self.fp16).eval()
        self.image_size = int(ckpt.metadata.get("image_size") or 0)
        self.pub_ids = self.create_publisher(Image, "segmentation", self.qos)
        self.pub_color = self.create_publisher(Image, "segmentation_color", self.qos)
        self.start(hardware_id=str(self.device))
        self.get_logger().info(
            f"segmenting image -> segmentation, segmentation_color with {self.checkpoint} on {self.device}; "
            f"classes {', '.join(f'{i} {n}' for i, n in enumerate(CLASS_NAMES))}"
        )

    def process(self, frame: Frame) -> None:
        ids = segment(self.model, frame.rgb, self.image_size, self.resize)
        self.publish(self.pub_ids, self.converter.mono_to_imgmsg(ids, frame.header))
        self.publish(self.pub_color, self.converter.rgb_to_imgmsg(overlay(frame.rgb, ids, self.alpha), frame.header))

    def extra_diagnostics(self) -> dict[str, Any]:
        return {"device": str(self.device), "fp16": self.fp16, "checkpoint": self.checkpoint}


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node(SegmenterNode, args, name="segmenter_node"))


if __name__ == "__main__":
    main()


__all__ = ["OnDevice", "SegmenterNode", "main", "overlay", "segment"]
