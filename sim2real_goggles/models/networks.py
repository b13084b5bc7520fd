"""Networks: translators (ResNet-9 reference, compact CPU generator), PatchGAN, segmenter.

Every network is a pure ``nn.Module``: generators map a [-1, 1] image batch (N, 3, H, W) to a
[-1, 1] image batch of the same size (H and W multiples of :data:`SIZE_MULTIPLE`); the
segmenter maps the same input to (N, num_classes, H, W) logits. No state is kept between calls,
so a ROS node can call them from any thread. :func:`to_tensor` makes that input from uint8 images.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

SIZE_MULTIPLE = 4
"""Generators and the segmenter down-sample twice: inputs must be multiples of 4 pixels."""

Norm = Literal["instance", "batch"]


def _norm(kind: Norm, channels: int) -> nn.Module:
    if kind == "instance":
        # As in CycleGAN: no affine parameters, no running statistics.
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"unknown norm {kind!r}: use 'instance' or 'batch'")


class ResidualBlock(nn.Module):
    """CycleGAN residual block: reflect-pad, conv3x3, norm, ReLU, reflect-pad, conv3x3, norm."""

    def __init__(self, channels: int, norm: Norm = "instance"):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=norm == "instance"),
            _norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=norm == "instance"),
            _norm(norm, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNet9Generator(nn.Module):
    """The CycleGAN reference generator (Zhu et al. 2017, Johnson et al. 2016):
    c7s1-64, d128, d256, 9 x R256, u128, u64, c7s1-3, tanh. About 11.4 M parameters.

    :param ngf: filters of the first layer.
    :param n_blocks: residual blocks at 1/4 resolution.
    :param norm: ``instance`` (reference) or ``batch``.
    :param outer_kernel: kernel of the first and last convolutions (7 in the reference).
    """

    def __init__(
        self, ngf: int = 64, n_blocks: int = 9, norm: Norm = "instance", outer_kernel: int = 7, in_channels: int = 3
    ):
        super().__init__()
        bias = norm == "instance"
        pad = outer_kernel // 2
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(pad),
            nn.Conv2d(in_channels, ngf, outer_kernel, bias=bias),
            _norm(norm, ngf),
            nn.ReLU(inplace=True),
        ]
        ch = ngf
        for _ in range(2):
            layers += [
                nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias),
                _norm(norm, ch * 2),
                nn.ReLU(inplace=True),
            ]
            ch *= 2
        layers += [ResidualBlock(ch, norm) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                _norm(norm, ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(pad), nn.Conv2d(ch, 3, outer_kernel), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class CompactGenerator(ResNet9Generator):
    """A generator for CPU real time: the ResNet-9 layout at a quarter of the width (ngf 16,
    so 64 channels at 1/4 resolution), 6 residual blocks, and 3x3 instead of 7x7 convolutions
    at full resolution. About 0.5 M parameters (1/23 of the reference).

    Dense narrow convolutions, not depthwise-separable ones: measured here with PyTorch on
    2 cores, a depthwise-separable variant of 0.32 M parameters ran 2x slower (44 ms vs 22 ms
    at 128x128, 204 ms vs 126 ms per training batch) because depthwise kernels are memory-bound.

    :param ngf: filters of the first layer.
    :param n_blocks: residual blocks at 1/4 resolution.
    :param norm: ``instance`` or ``batch`` (foldable into the convolutions for inference).
    """

    def __init__(self, ngf: int = 16, n_blocks: int = 6, norm: Norm = "instance"):
        super().__init__(ngf=ngf, n_blocks=n_blocks, norm=norm, outer_kernel=3)


class PixelDAGenerator(nn.Module):
    """PixelDA's sim->real generator (Bousmalis et al., CVPR 2017): image *and* noise in. The
    noise vector ``z`` is projected to ``noise_channels`` values broadcast over the image and
    concatenated to it, then the compact generator layout maps the result to an image.

    ``G(x)`` alone uses ``z = 0``, the mean of the uniform(-1, 1) training noise, so the network
    is a deterministic translator for :class:`~sim2real_goggles.translation.Translator` (and
    policy training through ``--refiner``); training passes random ``z``.

    :param noise_dim: length of ``z``.
    :param noise_channels: channels ``z`` is projected to.
    """

    def __init__(self, ngf: int = 16, n_blocks: int = 6, noise_dim: int = 10, noise_channels: int = 4):
        super().__init__()
        self.noise_dim = noise_dim
        self.project = nn.Linear(noise_dim, noise_channels)
        self.body = ResNet9Generator(ngf, n_blocks, "instance", outer_kernel=3, in_channels=3 + noise_channels)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:
            z = x.new_zeros(x.shape[0], self.noise_dim)
        n = self.project(z)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
        return self.body(torch.cat([x, n], dim=1))


class PatchGANDiscriminator(nn.Module):
    """70x70 PatchGAN (Isola et al. 2017): C64-C128-C256-C512, stride 2 except the last two,
    LeakyReLU 0.2, no norm on the first layer; one real/fake score per overlapping patch.

    :param ndf: filters of the first layer.
    :param n_layers: 3 gives the 70x70 receptive field.
    :param in_channels: 3 for images; the class count for segmentation maps.
    """

    def __init__(self, ndf: int = 64, n_layers: int = 3, norm: Norm = "instance", in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        ch = ndf
        for i in range(1, n_layers + 1):
            out = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [
                nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=norm == "instance"),
                _norm(norm, out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            ch = out
        layers += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SegmenterNet(nn.Module):
    """Small U-Net: two down-sampling stages with skip connections, batch norm, per-pixel
    class logits. Used as the frozen "sim segmenter" of the semantic loss and the sem_miou
    metric (the FCN score of CycleGAN/CyCADA).

    With ``context`` it has a third down-sampling stage (8x8 at 64x64), a dilated block there
    and a global-average-pooling branch, so every pixel sees the whole frame (0.42 M parameters
    at base 16 instead of 0.12 M). The labeller uses it: whether a textured vertical band is a
    wall or an obstacle shows in where it meets the floor relative to the rest of the room,
    further away than the plain U-Net's receptive field (about 40 pixels) reaches.

    :param num_classes: output classes (floor, wall, obstacle, target).
    :param base: channels of the first stage (doubled per stage, at most 4x).
    :param context: the deeper, global-context variant described above.
    """

    def __init__(self, num_classes: int = 4, base: int = 16, context: bool = False):
        super().__init__()

        def block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            )

        self.context = context
        self.enc1 = block(3, base)
        self.enc2 = block(base, base * 2)
        self.enc3 = block(base * 2, base * 4)
        if context:
            self.enc4 = block(base * 4, base * 4)
            self.ctx = block(base * 4, base * 4, dilation=2)
            self.glob = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(base * 4, base * 4, 1), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        if context:
            self.dec3 = block(base * 8 + base * 4, base * 4)
        self.dec2 = block(base * 4 + base * 2, base * 2)
        self.dec1 = block(base * 2 + base, base)
        self.head = nn.Conv2d(base, num_classes, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Bottleneck features (for fd_seg, the Fréchet distance of segmenter features)."""
        return self.enc3(self.pool(self.enc2(self.pool(self.enc1(x)))))

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the intermediate features by stage name (enc1, enc2, enc3 = the
        bottleneck, dec2, dec1 = what the head reads; with ``context`` also enc4 and dec3);
        DANN adapts some of them."""
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        feats = {"enc1": e1, "enc2": e2, "enc3": e3}
        top = e3
        if self.context:
            e4 = self.ctx(self.enc4(self.pool(e3)))
            glob = self.glob(e4).expand_as(e4)
            top = self.dec3(torch.cat([self.up(torch.cat([e4, glob], dim=1)), e3], dim=1))
            feats.update(enc4=e4, dec3=top)
        d2 = self.dec2(torch.cat([self.up(top), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], dim=1))
        return self.head(d1), {**feats, "dec2": d2, "dec1": d1}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class PolicyNet(nn.Module):
    """Image policy: a small convolutional encoder (four stride-2 stages, 64×64 → 4×4) with
    an action head (logits of forward / turn left / turn right) and a value head (for PPO).

    With ``memory > 0`` a GRU of that many units sits between the encoder and the heads, so the
    action depends on every frame of the episode so far, not on the newest alone: a robot that
    cannot see the chair can remember which way it has already looked. Such a policy is driven
    one frame at a time with :meth:`step` (carrying the returned state) or over whole episodes
    with :meth:`forward_sequence`; :meth:`forward` serves only reactive policies.

    :param frames: camera frames stacked along the channels (1: a reactive policy).
    :param num_actions: discrete actions (the env's three).
    :param width: channels of the first convolution (doubled after it).
    :param hidden: units of the fully connected layer.
    :param memory: units of the recurrent layer (0: none, the action depends on the input alone).
    """

    def __init__(self, frames: int = 1, num_actions: int = 3, width: int = 16, hidden: int = 256, memory: int = 0):
        super().__init__()
        self.frames = frames
        self.encoder = nn.Sequential(
            # stride-2 stages keep a far-away chair (a few pixels) visible to the later layers
            nn.Conv2d(3 * frames, width, 5, stride=2, padding=2),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            # any camera size: pool the feature map to the 4x4 a 64x64 image gives
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, hidden),
            nn.ReLU(inplace=True),
        )
        self.memory = nn.GRU(hidden, memory) if memory else None
        head_in = memory or hidden
        self.action_head = nn.Linear(head_in, num_actions)
        self.value_head = nn.Linear(head_in, 1)

    @property
    def recurrent(self) -> bool:
        return self.memory is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Action logits (N, num_actions) for images (N, 3·frames, H, W) in [-1, 1] (reactive
        policies; a recurrent one needs its state: :meth:`step`)."""
        if self.memory is not None:
            raise TypeError("a recurrent PolicyNet (memory > 0) acts through step() or forward_sequence()")
        return self.action_head(self.encoder(x))

    def value(self, x: torch.Tensor) -> torch.Tensor:
        if self.memory is not None:
            raise TypeError("a recurrent PolicyNet (memory > 0) has no state-free value()")
        return self.value_head(self.encoder(x)).squeeze(-1)

    def step(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One control step for N robots: logits (N, num_actions) and the state to pass to the
        next step (``None`` in, and out, for a reactive policy; ``None`` in starts an episode)."""
        if self.memory is None:
            return self(x), None
        features = self.encoder(x)
        out, state = self.memory(features[None], state)
        return self.action_head(out[0]), state

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (T, N, num_actions) for N episodes of T frames, (T, N, 3·frames, H, W), each
        from its first frame (a shorter episode padded at the end is unaffected by the padding)."""
        steps, n = x.shape[:2]
        features = self.encoder(x.flatten(0, 1)).unflatten(0, (steps, n))
        if self.memory is not None:
            features, _ = self.memory(features)
        return self.action_head(features)


class PolicyEnsemble(nn.Module):
    """Several image policies acting as one: the action distribution is the mean of the members'
    (a deep ensemble, Lakshminarayanan et al., NeurIPS 2017). Members trained from different
    seeds or data make different mistakes where the frame does not show the way, and averaging
    their distributions takes the action most of them agree on.

    :meth:`step` returns the log of the mean probabilities, so a softmax of its output is that
    mean and the runtime (:class:`~sim2real_goggles.policy.ImagePolicy`) treats an ensemble as
    any policy. Members may differ in width and memory; they must stack the same frames.

    :param members: keyword arguments of each member's :class:`PolicyNet`.
    """

    def __init__(self, members: list[dict[str, Any]]):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 member policies, got {len(members)}")
        frames = {int(m.get("frames", 1)) for m in members}
        if len(frames) != 1:
            raise ValueError(f"ensemble members must stack the same number of frames, got {sorted(frames)}")
        self.frames = frames.pop()
        self.members = nn.ModuleList(PolicyNet(**m) for m in members)

    @property
    def recurrent(self) -> bool:
        return any(m.recurrent for m in self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the members' mean action probabilities (N, num_actions) (reactive members only,
        as :meth:`PolicyNet.forward`)."""
        return self._mean_log_probs([m(x) for m in self.members])

    def step(
        self, x: torch.Tensor, state: tuple[torch.Tensor | None, ...] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...] | None]:
        """One control step: the mean distribution's log-probabilities and the members' states
        (``None`` when every member is reactive; ``None`` in starts an episode)."""
        states = state if state is not None else (None,) * len(self.members)
        outputs = [m.step(x, s) for m, s in zip(self.members, states, strict=True)]
        new_state = tuple(s for _, s in outputs)
        return self._mean_log_probs([logits for logits, _ in outputs]), (new_state if self.recurrent else None)

    @staticmethod
    def _mean_log_probs(logits: list[torch.Tensor]) -> torch.Tensor:
        log_probs = torch.stack([torch.log_softmax(z.float(), dim=-1) for z in logits])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a convolution (``Conv2d`` or
    ``ConvTranspose2d``, inside an ``nn.Sequential``) into that convolution's weights and bias,
    and replace it by ``nn.Identity``: the same function with one memory pass less per layer.
    In place; returns ``model``. Batch norm in training mode is left alone (its statistics are
    the batch's, not constants)."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, conv), (name, bn) in zip(children, children[1:], strict=False):
            if not (isinstance(bn, nn.BatchNorm2d) and not bn.training and bn.track_running_stats):
                continue
            if not isinstance(conv, nn.Conv2d | nn.ConvTranspose2d) or conv.groups != 1:
                continue
            scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
            shift = (bn.bias if bn.affine else torch.zeros_like(bn.running_mean)) - bn.running_mean * scale
            # Conv2d weights are (out, in, k, k); ConvTranspose2d weights are (in, out, k, k)
            shape = (-1, 1, 1, 1) if isinstance(conv, nn.Conv2d) else (1, -1, 1, 1)
            conv.weight.mul_(scale.reshape(shape))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            conv.bias = nn.Parameter(bias * scale + shift, requires_grad=conv.weight.requires_grad)
            setattr(module, name, nn.Identity())
    return model


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> float32 network input (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


ARCHITECTURES: dict[str, type[nn.Module]] = {
    "resnet9": ResNet9Generator,
    "compact": CompactGenerator,
    "pixelda": PixelDAGenerator,
    "patchgan": PatchGANDiscriminator,
    "segmenter": SegmenterNet,
    "policy_cnn": PolicyNet,
    "policy_ensemble": PolicyEnsemble,
}


GENERATOR_PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    "resnet9": ("resnet9", {}),
    "compact": ("compact", {}),
    # the student of config/training/distill.yaml: 12 filters, 4 blocks, batch norm (folded at inference)
    "compact_fast": ("compact", {"ngf": 12, "n_blocks": 4, "norm": "batch"}),
}
"""Named generator configurations (architecture, keyword arguments) that the benchmarks compare."""


def build_model(arch: str, **kwargs) -> nn.Module:
    """Instantiate an architecture by name with its keyword arguments."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}: available: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
