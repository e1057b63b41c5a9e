"""One clip end to end: layout -> motion -> look -> labels and text (``plan_clip_spec``) -> rendered row.

Planning and rendering are separate on purpose: planning is cheap numpy/torch (milliseconds) and fully decides
the row, so statistics over many clips (label fractions, aperture vs size, ...) need no rendering; rendering is
the expensive part and touches only the first frame and the chunk-boundary frames, which is all a row stores.

Determinism: every clip draws from its own generators seeded by (seed, domain, split, index, stream), with
separate streams for the layout and motion, the look, the text and the labels. A clip therefore does not depend
on how many clips are built, in which order, or by how many workers, and changing the look never changes the
motion.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dataset_scripts.images import encode_image
from dataset_scripts.repo_layout import SPLITS
from dataset_scripts.schema import TASK_TYPES, boundary_frame_indices
from modeling_jala.hand_jala import rot6d_to_matrix
from modeling_jala.layout_jala import HANDS

from .geometry import elbow_position, frame_from_axes, normalize, world_to_camera_motion, world_to_camera_points
from .instructions import instruction_for
from .layout import Layout, to_planning_frame
from .layout_sampler import FAMILIES, TWO_HAND_FAMILIES, sample_layout
from .mjcf import FOREARM_LENGTH, scene_xml
from .motions import ClipMotion, motion_summary, plan_clip
from .postures import shared_skeleton
from .pseudo_labels import pseudo_label
from .scenes import Look, sample_look

if TYPE_CHECKING:  # mujoco is imported only where frames are rendered (it must see MUJOCO_GL first)
    from .renderer import SceneRenderer

DOMAIN_CODES = {"lab": 0, "wild": 1}
SPLIT_CODES = {split: index for index, split in enumerate(SPLITS)}
DEFAULT_TASK_MIX = {
    "motion_generation": 0.5,
    "motion_continuation": 0.2,
    "motion_description": 0.2,
    "video_only": 0.1,
}
_STREAMS = {"layout": 0, "motion": 1, "look": 2, "text": 3, "label": 4, "noise": 5}


@dataclass(frozen=True)
class WorldOptions:
    """What a build of the procedural world is; see ``SyntheticSource`` for the meaning of each field."""

    domain: str = "lab"
    split: str = "train"
    seed: int = 0
    image_size: tuple[int, int] = (224, 224)
    pseudo_label_fraction: float = 0.1
    task_mix: tuple[tuple[str, float], ...] = tuple(DEFAULT_TASK_MIX.items())
    family_weights: tuple[tuple[str, float], ...] = tuple((f, 1.0) for f in FAMILIES)
    two_hand_probability: float = 0.3
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if self.domain not in DOMAIN_CODES:
            raise ValueError(f"domain must be 'lab' or 'wild', got {self.domain!r}.")
        allowed = {"lab": ("train", "test_lab"), "wild": ("train", "test_wild")}[self.domain]
        if self.split not in allowed:
            raise ValueError(
                f"split {self.split!r} does not go with domain {self.domain!r}; use one of {allowed} "
                "(test_lab holds lab clips, test_wild held-out wild clips)."
            )
        width, height = self.image_size
        if not (16 <= width <= 2048 and 16 <= height <= 2048):
            raise ValueError(f"image_size must be (width, height) within 16..2048 pixels, got {self.image_size}.")
        if not 0.0 <= self.pseudo_label_fraction <= 1.0:
            raise ValueError(f"pseudo_label_fraction must be in [0, 1], got {self.pseudo_label_fraction}.")
        for name, weight in self.task_mix:
            if name not in TASK_TYPES or weight < 0:
                raise ValueError(f"task_mix: {name!r}={weight} must name one of {TASK_TYPES} with a weight >= 0.")
        if sum(w for _, w in self.task_mix) <= 0:
            raise ValueError("task_mix needs at least one positive weight.")
        for name, weight in self.family_weights:
            if name not in FAMILIES or weight < 0:
                raise ValueError(f"family_weights: {name!r}={weight} must name one of {FAMILIES} with a weight >= 0.")
        if sum(w for _, w in self.family_weights) <= 0:
            raise ValueError("family_weights needs at least one positive weight.")
        if not 0.0 <= self.two_hand_probability <= 1.0:
            raise ValueError(f"two_hand_probability must be in [0, 1], got {self.two_hand_probability}.")

    def rng(self, index: int, stream: str, *extra: int) -> np.random.Generator:
        key = [self.seed, DOMAIN_CODES[self.domain], SPLIT_CODES[self.split], index, _STREAMS[stream], *extra]
        return np.random.default_rng(key)

    @property
    def label_mode(self) -> str:
        """'exact' for lab and every test split; 'hidden' for wild train (pseudo-labels for a fraction)."""
        return "hidden" if (self.domain == "wild" and self.split == "train") else "exact"

    def is_pseudo_labelled(self, index: int) -> bool:
        """Stratified choice of the pseudo-labelled wild clips: any run of n clips holds n * fraction +- 1.

        Clip i is chosen when floor(i f + u) steps up, with one phase u per (seed, split); deterministic per
        index, so it does not depend on workers or on num_clips.
        """
        if self.label_mode != "hidden" or self.pseudo_label_fraction <= 0.0:
            return False
        phase = float(np.random.default_rng([self.seed, 7919]).uniform())
        f = self.pseudo_label_fraction
        return math.floor(index * f + phase) > math.floor((index - 1) * f + phase)


@dataclass
class ClipSpec:
    """Everything about a clip except its pixels."""

    options: WorldOptions
    index: int
    layout: Layout
    motion: ClipMotion
    look: Look
    task_type: str
    instruction: str
    label_source: str
    label_confidence: float
    labels: np.ndarray | None  # (T, 2, 162) float32 camera frame, or None when hidden
    exact_labels: np.ndarray  # (T, 2, 162) float32 camera frame, always (for tests and evaluation)
    scene: dict[str, Any] = field(default_factory=dict)

    @property
    def clip_id(self) -> str:
        o = self.options
        return f"synthetic-{o.domain}-{o.split}-s{o.seed}-{self.index:07d}"


def _choose(rng: np.random.Generator, weighted: tuple[tuple[str, float], ...]) -> str:
    names = [n for n, _ in weighted]
    weights = np.array([w for _, w in weighted], dtype=np.float64)
    return str(names[int(rng.choice(len(names), p=weights / weights.sum()))])


def plan_clip_spec(options: WorldOptions, index: int) -> ClipSpec:
    """Decide a clip completely (layout, motion, look, text, labels) without rendering it."""
    layout_rng = options.rng(index, "layout")
    family = _choose(layout_rng, options.family_weights)
    two_hands = family in TWO_HAND_FAMILIES and layout_rng.uniform() < options.two_hand_probability
    layout = sample_layout(layout_rng, family, two_hands)
    motion = plan_clip(options.rng(index, "motion"), layout, shared_skeleton())
    look = sample_look(options.rng(index, "look"), options.domain, options.split, layout, options.image_size)
    camera = look.camera

    exact = world_to_camera_motion(motion.motion_world, camera.rotation, camera.position)
    for slot, present in enumerate(motion.hands_present):
        if not present:
            exact[:, slot] = 0.0
    exact = exact.astype(np.float32)

    label_rng = options.rng(index, "label")
    if options.label_mode == "exact":
        labels, source, confidence = exact, "exact", 1.0
    elif options.is_pseudo_labelled(index):
        labels, confidence = pseudo_label(label_rng, exact, motion.hands_present, layout.bone_scale, shared_skeleton())
        source = "pseudo"
    else:
        labels, source, confidence = None, "none", 0.0

    text_rng = options.rng(index, "text")
    task_type = "video_only" if labels is None else _choose(text_rng, options.task_mix)
    summary = motion_summary(layout, motion)
    instruction = instruction_for(text_rng, layout, task_type)
    spec = ClipSpec(options, index, layout, motion, look, task_type, instruction, source, confidence, labels, exact)
    spec.scene = _scene_json(spec, summary)
    return spec


def _rounded(values: np.ndarray, digits: int = 5) -> list[float]:
    return [round(float(v), digits) for v in np.asarray(values).reshape(-1)]


def _scene_json(spec: ClipSpec, summary: dict[str, Any]) -> dict[str, Any]:
    camera = spec.look.camera
    width, height = spec.options.image_size
    objects = []
    for obj in spec.layout.objects + spec.look.distractors:
        entry = obj.to_json()
        entry["position_camera"] = _rounded(world_to_camera_points(obj.position, camera.rotation, camera.position))
        objects.append(entry)
    starts = {}
    for side in HANDS:
        wrist = to_planning_frame(spec.layout.hand_starts[side].position, side)
        starts[side] = {
            "wrist_world": _rounded(wrist),
            "wrist_camera": _rounded(world_to_camera_points(wrist, camera.rotation, camera.position)),
        }
    targets = list(dict.fromkeys(spec.layout.targets.values()))
    return {
        "world_frame": "table top centre, +z up, +y away from the person, +x to their right (metres)",
        "domain": spec.options.domain,
        "split": spec.options.split,
        "objects": objects,
        "target": targets[0] if len(targets) == 1 else targets,
        "acting_hands": summary["acting_hands"],
        "motion": summary,
        "hand_starts": starts,
        "bone_scale": round(spec.layout.bone_scale, 5),
        "camera": {
            **camera.to_json(),
            "intrinsics": _rounded(camera.intrinsics(width, height), 4),
            "image_size": [width, height],
        },
        "look": spec.look.to_json(),
    }


def _decode_hand(motion_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World D162 (N, 162) -> wrist rotations (N, 3, 3), positions (N, 3), joint rotations (N, 15, 3, 3)."""
    tensor = torch.from_numpy(motion_world)
    wrist = rot6d_to_matrix(tensor[:, 90:96]).numpy()
    joints = rot6d_to_matrix(tensor[:, :90].reshape(-1, 15, 6)).numpy()
    return wrist, motion_world[:, 96:99], joints


#: Shoulders (world frame, right side; the left is mirrored) and arm segment lengths of the drawn arms.
_SHOULDER = np.array([0.19, -0.46, 0.22])
_UPPER_ARM, _FOREARM = 0.31, 0.28
#: Largest angle (radians) between the forearm and the back of the hand's axis (-x of the wrist frame): wrist
#: flexion/extension and deviation stay within about 60 degrees, as in a real wrist.
_WRIST_BEND_LIMIT = np.radians(60.0)


def arm_poses(
    side: str, wrist_rotation: np.ndarray, wrist_position: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Rotation and position of the drawn forearm (toward a two-link-arm elbow, within the wrist's range) and of
    the upper arm (from the resulting elbow toward the shoulder)."""
    shoulder = _SHOULDER * np.array([-1.0 if side == "left" else 1.0, 1.0, 1.0])
    outward = np.array([-1.0 if side == "left" else 1.0, 0.0, 0.0])
    elbow = elbow_position(shoulder, wrist_position, _UPPER_ARM, _FOREARM, np.array([0.0, 0.0, -1.0]) + 0.6 * outward)
    toward_elbow = normalize(elbow - wrist_position)
    neutral = -wrist_rotation[:, 0]  # forearm in line with the hand
    angle = float(np.arccos(np.clip(toward_elbow @ neutral, -1.0, 1.0)))
    if angle > _WRIST_BEND_LIMIT:  # rotate from the neutral direction toward the elbow by at most the limit
        ortho = normalize(toward_elbow - (toward_elbow @ neutral) * neutral)
        toward_elbow = np.cos(_WRIST_BEND_LIMIT) * neutral + np.sin(_WRIST_BEND_LIMIT) * ortho
    elbow = wrist_position + toward_elbow * FOREARM_LENGTH
    return {
        "forearm": (frame_from_axes(toward_elbow, wrist_rotation[:, 1]), wrist_position),
        "upperarm": (frame_from_axes(shoulder - elbow, np.array([0.0, 0.0, 1.0])), elbow),
    }


def pose_scene(renderer: SceneRenderer, spec: ClipSpec, frame: int) -> None:
    """Put both hands, their forearms and every moving object in their pose at ``frame``; run kinematics."""
    wrist, position, joints = _decode_hand(spec.motion.motion_world[frame])
    for slot, side in enumerate(HANDS):
        renderer.set_hand(side, wrist[slot], position[slot], joints[slot])
        for segment, (rotation, origin) in arm_poses(side, wrist[slot], position[slot]).items():
            renderer.set_arm(side, rotation, origin, segment)
    for name, (positions, rotations) in spec.motion.object_poses.items():
        renderer.set_object(name, rotations[frame], positions[frame])
    renderer.forward()


def load_scene(renderer: SceneRenderer, spec: ClipSpec) -> None:
    objects = spec.layout.objects + spec.look.distractors
    xml = scene_xml(
        objects,
        set(spec.motion.object_poses),
        spec.look,
        spec.layout.bone_scale,
        spec.options.image_size,
        shared_skeleton(),
    )
    renderer.load(xml)


def render_frame(renderer: SceneRenderer, spec: ClipSpec, frame: int) -> dict[str, Any]:
    """One stored frame of a loaded clip (`load_scene` first): posed, rendered, with the look's sensor noise, and
    JPEG-encoded at the look's quality, exactly as a dataset row holds it."""
    options = spec.options
    pose_scene(renderer, spec, frame)
    image = renderer.render()
    if spec.look.noise_std > 0:
        noise = options.rng(spec.index, "noise", frame).normal(0.0, spec.look.noise_std, size=image.shape)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    quality = options.jpeg_quality if options.domain == "lab" else min(options.jpeg_quality, spec.look.jpeg_quality)
    return encode_image(image, quality=quality)


def render_row(renderer: SceneRenderer, spec: ClipSpec) -> dict[str, Any]:
    """Render the first and boundary frames of a planned clip and assemble its row (schema columns + split)."""
    options = spec.options
    load_scene(renderer, spec)
    frames = [render_frame(renderer, spec, frame) for frame in boundary_frame_indices(spec.motion.num_frames)]
    width, height = options.image_size
    return {
        "id": spec.clip_id,
        "source": "synthetic",
        "domain": options.domain,
        "split": options.split,
        "instruction": spec.instruction,
        "task_type": spec.task_type,
        "fps": 15.0,
        "num_frames": spec.motion.num_frames,
        "hands_present": list(spec.motion.hands_present),
        "labelled": spec.labels is not None,
        "label_source": spec.label_source,
        "label_confidence": float(spec.label_confidence),
        "first_frame": frames[0],
        "boundary_frames": frames,
        "camera_intrinsics": [float(v) for v in spec.look.camera.intrinsics(width, height)],
        "motion": spec.labels,
        "scene": json.dumps(spec.scene, sort_keys=True),
    }
