"""PyBullet scene of a :class:`Layout` in one appearance profile, and its camera.

Each :class:`SceneRenderer` owns one PyBullet DIRECT client holding the room with that profile's
textures and lighting. Paired renders (the same pose in several profiles) use one renderer per
profile with the same camera pose; the geometry is identical, so the segmentation masks agree
whenever the camera models agree.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pybullet as pb

from sim2real_goggles.appearance.imaging import CameraModel, apply_sensor
from sim2real_goggles.appearance.profile import CLASS_NAMES, IGNORE_ID, Profile, load_profile
from sim2real_goggles.appearance.textures import TextureJitter, jittered_color, texture_image
from sim2real_goggles.envs.layout import Layout
from sim2real_goggles.resources import share_path

CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}
NEAR_PLANE = 0.03
FAR_PLANE = 20.0


class SceneRenderer:
    """Renders camera views of a layout in one profile.

    Args:
        profile: profile name, path or :class:`Profile`.
        image_size: (height, width) of the delivered images.
    """

    def __init__(self, profile: str | Path | Profile, image_size: tuple[int, int]):
        self.image_size = image_size
        profile = load_profile(profile)  # a bad profile fails before a client is opened
        self.client = pb.connect(pb.DIRECT)
        self._texture_dir: str | None = None
        self._class_lut = np.full(1, IGNORE_ID, dtype=np.uint8)
        self._noise_rng = np.random.default_rng(0)
        self.set_profile(profile)

    def set_profile(self, profile: str | Path | Profile) -> None:
        """Render in ``profile`` from the next :meth:`build` on (the PyBullet client is kept;
        the scene's textures change when it is rebuilt, the camera and light at once)."""
        self.profile = load_profile(profile)
        self.camera = CameraModel.build(self.profile.camera, self.image_size)
        rh, rw = self.camera.render_size
        self.projection = pb.computeProjectionMatrixFOV(self.camera.render_fov_deg, rw / rh, NEAR_PLANE, FAR_PLANE)
        light = self.profile.light
        self._light_kwargs = dict(
            lightDirection=list(light.direction),
            lightColor=list(light.color),
            lightAmbientCoeff=light.ambient,
            lightDiffuseCoeff=light.diffuse,
            lightSpecularCoeff=light.specular,
            shadow=int(light.shadows),
        )
        self._post = self.profile.has_sensor_effects or self.camera.vignette is not None

    # ------------------------------------------------------------------ scene
    def build(self, layout: Layout, rng: np.random.Generator) -> None:
        """Replace the scene with ``layout``; texture jitter and sensor noise draw from ``rng``."""
        c = self.client
        pb.resetSimulation(physicsClientId=c)  # also frees the previous episode's textures
        jitter = {name: TextureJitter.draw(self.profile.texture(name), rng) for name in CLASS_NAMES}
        self._noise_rng = np.random.default_rng(int(rng.integers(2**63)))
        owners: dict[int, int] = {}

        floor = self._mesh_body(*_floor_mesh(layout, self._tile("floor", jitter)))
        owners[floor] = CLASS_ID["floor"]
        for wall in layout.walls:
            fp = wall.footprint
            mesh = _box_mesh(fp.hx, fp.hy, wall.height / 2.0, self._tile("wall", jitter))
            uid = self._mesh_body(*mesh, position=(fp.x, fp.y, wall.height / 2.0), yaw=fp.yaw)
            owners[uid] = CLASS_ID["wall"]
        for ob in layout.obstacles:
            fp = ob.footprint
            if ob.kind == "box":
                shape = pb.createVisualShape(
                    pb.GEOM_BOX, halfExtents=[fp.hx, fp.hy, ob.height / 2.0], physicsClientId=c
                )
            else:
                shape = pb.createVisualShape(pb.GEOM_CYLINDER, radius=fp.radius, length=ob.height, physicsClientId=c)
            uid = pb.createMultiBody(
                0,
                -1,
                shape,
                basePosition=[fp.x, fp.y, ob.height / 2.0],
                baseOrientation=pb.getQuaternionFromEuler([0, 0, fp.yaw]),
                physicsClientId=c,
            )
            owners[uid] = CLASS_ID["obstacle"]
        t = layout.target
        chair = pb.loadURDF(
            str(share_path("sim", "chair.urdf")),
            basePosition=[t.x, t.y, 0.0],
            baseOrientation=pb.getQuaternionFromEuler([0, 0, t.yaw]),
            useFixedBase=True,
            physicsClientId=c,
        )
        owners[chair] = CLASS_ID["target"]

        for uid, cls in owners.items():
            self._paint(uid, CLASS_NAMES[cls], jitter[CLASS_NAMES[cls]])
        lut = np.full(max(owners) + 2, IGNORE_ID, dtype=np.uint8)  # index = uid + 1; -1 = nothing
        for uid, cls in owners.items():
            lut[uid + 1] = cls
        self._class_lut = lut

    def _tile(self, class_name: str, jitter: dict[str, TextureJitter]) -> float:
        return self.profile.texture(class_name).tile_m * jitter[class_name].scale

    def _mesh_body(self, vertices, indices, uvs, normals, position=(0.0, 0.0, 0.0), yaw=0.0) -> int:
        c = self.client
        shape = pb.createVisualShape(
            pb.GEOM_MESH, vertices=vertices, indices=indices, uvs=uvs, normals=normals, physicsClientId=c
        )
        return pb.createMultiBody(
            0,
            -1,
            shape,
            basePosition=list(position),
            baseOrientation=pb.getQuaternionFromEuler([0, 0, yaw]),
            physicsClientId=c,
        )

    def _paint(self, uid: int, class_name: str, jitter: TextureJitter) -> None:
        c = self.client
        spec = self.profile.texture(class_name)
        links = [-1] + list(range(pb.getNumJoints(uid, physicsClientId=c)))
        if spec.color is not None:
            rgba = [*jittered_color(spec, jitter), 1.0]
            for link in links:
                pb.changeVisualShape(uid, link, rgbaColor=rgba, physicsClientId=c)
            return
        tex = self._texture(class_name, jitter)
        b = jitter.brightness
        for link in links:
            pb.changeVisualShape(uid, link, textureUniqueId=tex, rgbaColor=[b, b, b, 1.0], physicsClientId=c)

    def _texture(self, class_name: str, jitter: TextureJitter) -> int:
        if self._texture_dir is None:
            self._texture_dir = tempfile.mkdtemp(prefix="goggles_textures_")
        path = Path(self._texture_dir) / f"{class_name}.bmp"
        img = texture_image(self.profile.texture(class_name), jitter)
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        return pb.loadTexture(str(path), physicsClientId=self.client)

    # ------------------------------------------------------------------ camera
    def render(self, view_matrix, with_mask: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Render the view; returns (RGB uint8 HxWx3, class mask uint8 HxW or None)."""
        rh, rw = self.camera.render_size
        _, _, rgba, _, seg = pb.getCameraImage(
            rw,
            rh,
            view_matrix,
            self.projection,
            renderer=pb.ER_TINY_RENDERER,
            flags=0 if with_mask else pb.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self.client,
            **self._light_kwargs,
        )
        rgb = np.ascontiguousarray(np.reshape(rgba, (rh, rw, 4))[:, :, :3])
        mask = self._class_lut[np.reshape(seg, (rh, rw)) + 1] if with_mask else None
        rgb, mask = self.camera.apply_lens(rgb, mask)
        if self._post:
            rgb = apply_sensor(rgb, self.profile.sensor, self.camera, self._noise_rng)
        return rgb, mask

    def close(self) -> None:
        if self.client >= 0:
            try:
                pb.disconnect(physicsClientId=self.client)
            except pb.error:
                pass
            self.client = -1
        if self._texture_dir is not None:
            shutil.rmtree(self._texture_dir, ignore_errors=True)
            self._texture_dir = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass


def camera_view_matrix(x: float, y: float, yaw: float, height: float, forward: float, pitch_deg: float) -> list[float]:
    """View matrix of the robot's camera: ``forward`` metres ahead of the robot centre at
    ``height``, looking along the heading, pitched by ``pitch_deg`` (negative looks down)."""
    c, s = math.cos(yaw), math.sin(yaw)
    pitch = math.radians(pitch_deg)
    eye = [x + forward * c, y + forward * s, height]
    look = [eye[0] + c * math.cos(pitch), eye[1] + s * math.cos(pitch), height + math.sin(pitch)]
    return pb.computeViewMatrix(eye, look, [0.0, 0.0, 1.0])


# ---------------------------------------------------------------------- meshes with tiled UVs
def _floor_mesh(layout: Layout, tile: float):
    hw, hd = layout.width / 2.0 + 0.2, layout.depth / 2.0 + 0.2
    vertices = [[-hw, -hd, 0.0], [hw, -hd, 0.0], [hw, hd, 0.0], [-hw, hd, 0.0]]
    # UVs are world metres / tile (offset so they stay positive: the renderer wraps only those).
    uvs = [[(v[0] + hw) / tile, (v[1] + hd) / tile] for v in vertices]
    return vertices, [0, 1, 2, 0, 2, 3], uvs, [[0.0, 0.0, 1.0]] * 4


def _box_mesh(hx: float, hy: float, hz: float, tile: float):
    """Five faces of a box (no bottom), each with UVs in tiles of its own size."""
    vertices, indices, uvs, normals = [], [], [], []
    faces = [
        # normal, axis u, axis v, half sizes along u, v, offset along normal
        ((1, 0, 0), (0, 1, 0), (0, 0, 1), hy, hz, hx),
        ((-1, 0, 0), (0, -1, 0), (0, 0, 1), hy, hz, hx),
        ((0, 1, 0), (-1, 0, 0), (0, 0, 1), hx, hz, hy),
        ((0, -1, 0), (1, 0, 0), (0, 0, 1), hx, hz, hy),
        ((0, 0, 1), (1, 0, 0), (0, 1, 0), hx, hy, hz),
    ]
    for n, u, v, hu, hv, off in faces:
        base = len(vertices)
        for su, sv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            vertices.append([n[i] * off + u[i] * su * hu + v[i] * sv * hv for i in range(3)])
            uvs.append([(su + 1) * hu / tile, (sv + 1) * hv / tile])
            normals.append(list(n))
        indices += [base, base + 1, base + 2, base, base + 2, base + 3]
    return vertices, indices, uvs, normals
