"""Offscreen MuJoCo rendering of hand-world scenes: RGB, segmentation and depth, with exact intrinsics.

Why not ``mujoco.Renderer``: it creates a GL context per model, and every clip here is a new model (its own
objects and textures). Creating an EGL context per clip costs more than rendering the clip's few frames, so this
renderer keeps one GL context per process and swaps only the ``MjrContext`` (textures, buffers) per scene.
Shadows, reflections and multisampling are off: they cost most of a software renderer's time and are not part
of what the data needs.

Set ``MUJOCO_GL=egl`` (or ``osmesa``) before importing mujoco on a machine without a display.
"""

from __future__ import annotations

import logging
import os

import mujoco
import numpy as np

from .geometry import matrix_to_quat
from .mjcf import JOINTED_KEYPOINTS, arm_body_name, hand_body_name, hand_joint_name, object_body_name

logger = logging.getLogger(__name__)


class SceneRenderer:
    """Renders one scene at a time from a single GL context (one renderer per process / worker)."""

    def __init__(self, max_width: int = 224, max_height: int = 224) -> None:
        from mujoco import gl_context

        if gl_context.GLContext is None:
            raise RuntimeError(
                "MuJoCo has no offscreen GL backend; set MUJOCO_GL=egl (or osmesa) before importing mujoco."
            )
        self._gl = gl_context.GLContext(max_width, max_height)
        self._gl.make_current()
        self.max_size = (max_width, max_height)
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self._context: mujoco.MjrContext | None = None
        self._scene: mujoco.MjvScene | None = None
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._qpos_slices: dict[str, int] = {}
        logger.debug("GL context created (MUJOCO_GL=%s).", os.environ.get("MUJOCO_GL", "<unset>"))

    # -- scene -------------------------------------------------------------------------------------------------

    def load(self, xml: str) -> None:
        """Compile a scene and make it current (frees the previous scene's GPU resources)."""
        self._free_scene()
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        width, height = self.model.vis.global_.offwidth, self.model.vis.global_.offheight
        if width > self.max_size[0] or height > self.max_size[1]:
            raise ValueError(
                f"scene renders at {width}x{height} but this renderer's GL surface is {self.max_size}; "
                "create SceneRenderer(max_width, max_height) at least as large as image_size."
            )
        self._gl.make_current()
        self._context = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_50)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._context.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._scene = mujoco.MjvScene(self.model, maxgeom=self.model.ngeom + 16)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = True
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, "view")
        self._qpos_slices = {self.model.joint(j).name: int(self.model.jnt_qposadr[j]) for j in range(self.model.njnt)}

    @property
    def size(self) -> tuple[int, int]:
        assert self.model is not None
        return int(self.model.vis.global_.offwidth), int(self.model.vis.global_.offheight)

    def hand_geom_ids(self, side: str, include_arm: bool = False) -> np.ndarray:
        """Geom ids of one hand (palm and fingers; with ``include_arm`` also the forearm and sleeve)."""
        assert self.model is not None
        names = [self.model.geom(g).name for g in range(self.model.ngeom)]
        prefixes = (f"{side}_", f"{side}arm_") if include_arm else (f"{side}_",)
        return np.array([g for g, name in enumerate(names) if name.startswith(prefixes)], dtype=np.int64)

    # -- pose ----------------------------------------------------------------------------------------------------

    def set_hand(
        self, side: str, wrist_rotation: np.ndarray, wrist_position: np.ndarray, joint_rotations: np.ndarray
    ) -> None:
        """World-frame wrist pose and the 15 local joint rotations (``MANO_JOINT_ORDER``) of one hand."""
        from modeling_jala.hand_jala import MANO_JOINT_TO_KEYPOINT

        assert self.data is not None
        qpos = self.data.qpos
        root = self._qpos_slices[hand_joint_name(side, 0)]
        qpos[root : root + 3] = wrist_position
        qpos[root + 3 : root + 7] = matrix_to_quat(wrist_rotation)
        quats = matrix_to_quat(joint_rotations)
        for joint, keypoint in enumerate(MANO_JOINT_TO_KEYPOINT):
            address = self._qpos_slices[hand_joint_name(side, keypoint)]
            qpos[address : address + 4] = quats[joint]

    def set_arm(self, side: str, rotation: np.ndarray, position: np.ndarray, segment: str = "forearm") -> None:
        """Pose of a drawn arm segment (a mocap body whose +x points from the wrist to the elbow, or from the
        elbow to the shoulder for ``segment="upperarm"``)."""
        assert self.model is not None and self.data is not None
        mocap = int(self.model.body_mocapid[self.model.body(arm_body_name(side, segment)).id])
        self.data.mocap_pos[mocap] = position
        self.data.mocap_quat[mocap] = matrix_to_quat(rotation)

    def set_object(self, name: str, rotation: np.ndarray, position: np.ndarray) -> None:
        assert self.data is not None
        address = self._qpos_slices[f"{object_body_name(name)}_free"]
        self.data.qpos[address : address + 3] = position
        self.data.qpos[address + 3 : address + 7] = matrix_to_quat(rotation)

    def body_positions(self, side: str) -> np.ndarray:
        """(16, 3) world positions of the wrist and the 15 jointed keypoint bodies (after :meth:`forward`)."""
        assert self.data is not None and self.model is not None
        names = [hand_body_name(side, 0)] + [hand_body_name(side, k) for k in JOINTED_KEYPOINTS]
        return np.stack([self.data.body(name).xpos.copy() for name in names])

    def forward(self) -> None:
        """Kinematics only: there is no dynamics in this world."""
        assert self.model is not None and self.data is not None
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)

    # -- rendering -----------------------------------------------------------------------------------------------

    def _draw(self, segmentation: bool) -> None:
        assert self._scene is not None and self._context is not None
        self._gl.make_current()
        mujoco.mjv_updateScene(
            self.model, self.data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self._scene
        )
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = segmentation
        self._scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = segmentation
        width, height = self.size
        mujoco.mjr_render(mujoco.MjrRect(0, 0, width, height), self._scene, self._context)

    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the current pose (call :meth:`forward` first)."""
        self._draw(segmentation=False)
        width, height = self.size
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(rgb, None, mujoco.MjrRect(0, 0, width, height), self._context)
        return np.flipud(rgb)

    def render_segmentation(self) -> np.ndarray:
        """(H, W) int geom id per pixel, -1 for background (sky)."""
        self._draw(segmentation=True)
        width, height = self.size
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(rgb, None, mujoco.MjrRect(0, 0, width, height), self._context)
        ids = rgb.astype(np.int64)
        segid = ids[..., 0] + ids[..., 1] * 256 + ids[..., 2] * 65536
        assert self._scene is not None
        lookup = np.full(self._scene.ngeom + 1, -1, dtype=np.int64)
        for index in range(self._scene.ngeom):
            geom = self._scene.geoms[index]
            if geom.segid >= 0 and geom.objtype == mujoco.mjtObj.mjOBJ_GEOM:
                lookup[geom.segid + 1] = geom.objid
        return np.flipud(lookup[np.clip(segid, 0, self._scene.ngeom)])

    def render_depth(self) -> np.ndarray:
        """(H, W) float32 metric depth along the optical axis (metres)."""
        self._draw(segmentation=True)
        width, height = self.size
        depth = np.empty((height, width), dtype=np.float32)
        mujoco.mjr_readPixels(None, depth, mujoco.MjrRect(0, 0, width, height), self._context)
        assert self.model is not None
        extent = self.model.stat.extent
        near, far = self.model.vis.map.znear * extent, self.model.vis.map.zfar * extent
        # Reverse-Z: window depth is already NDC; undo the perspective (same algebra as mujoco.Renderer).
        c = -(far + near) / (far - near)
        d = -(2.0 * far * near) / (far - near)
        c, d = -0.5 * c - 0.5, -0.5 * d
        return np.flipud((d / (depth.astype(np.float64) + c)).astype(np.float32))

    # -- lifetime ------------------------------------------------------------------------------------------------

    def _free_scene(self) -> None:
        if self._context is not None:
            self._gl.make_current()
            self._context.free()
        self._context = None
        self._scene = None
        self.model = None
        self.data = None

    def close(self) -> None:
        """Free GL resources explicitly (avoids noisy errors when the interpreter tears down EGL)."""
        self._free_scene()
        if self._gl is not None:
            self._gl.free()
            self._gl = None

    def __enter__(self) -> SceneRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
