"""Realistic pseudo-labels for the wild subset: what a monocular hand tracker + D162 fit would give.

The paper keeps in-the-wild pseudo hand poses whose confidence is at least 0.65. To stand in for them, exact
camera-frame labels are corrupted the way tracker output is, and the amount of corruption grows as the clip's
confidence falls:

* per-frame jitter of finger angles (about 2-5 degrees, a few millimetres at the joints) and of the wrist
  rotation: trackers are frame-by-frame, so their noise is temporally white;
* a per-clip bias of the finger angles, wrist rotation and bone scale (a systematically wrong hand shape/size);
* a wrist translation bias mostly along the optical axis (monocular depth is ambiguous: 1-4 cm), a few mm
  sideways, plus per-frame translation jitter;
* dropped frames: the tracker loses the hand and the pipeline holds the last pose for 1-4 frames;
* occasionally a one-frame lag of the whole label track.

The corrupted parameters go back through ``HandSkeleton.to_d162``, so a pseudo-label is still a consistent
D162 (joint block = FK of its rotations), as a fit to tracked keypoints would be.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from modeling_jala.hand_jala import HandSkeleton, axis_angle_to_matrix, mirror_motion

#: The paper's threshold: pseudo-labels below it are dropped, so every stored one is at least this confident.
MIN_CONFIDENCE = 0.65


def pseudo_label(
    rng: np.random.Generator,
    motion: np.ndarray,
    hands_present: tuple[bool, bool],
    bone_scale: float,
    skeleton: HandSkeleton | None = None,
) -> tuple[np.ndarray, float]:
    """Corrupt an exact camera-frame (T, 2, 162) label; returns the noisy label and its confidence."""
    skeleton = skeleton or HandSkeleton()
    confidence = float(rng.uniform(MIN_CONFIDENCE, 1.0))
    severity = 0.5 + 1.5 * (1.0 - confidence) / (1.0 - MIN_CONFIDENCE)  # 0.5 (confident) .. 2 (borderline)
    noisy = np.zeros_like(motion)
    num_frames = motion.shape[0]
    for slot, present in enumerate(hands_present):
        if not present:
            continue
        hand = torch.from_numpy(motion[:, slot].astype(np.float64))
        if slot == 0:  # left hands are handled as mirrored right hands
            hand = mirror_motion(hand)
        wrist_rot, transl, joint_rots = skeleton.from_d162(hand)
        angles = skeleton.joint_angles_from_rotations(joint_rots).numpy()

        angle_noise = np.radians(rng.normal(0.0, 2.5 * severity, size=angles.shape))
        angle_bias = np.radians(rng.normal(0.0, 2.5 * severity, size=(1, *angles.shape[1:])))
        angles = angles + (angle_noise + angle_bias) * np.array([1.0, 0.5, 0.3])
        rotvec = np.radians(
            rng.normal(0.0, 1.5 * severity, size=(num_frames, 3)) + rng.normal(0.0, 3.0 * severity, size=(1, 3))
        )
        wrist_rot = axis_angle_to_matrix(torch.from_numpy(rotvec)) @ wrist_rot
        bias = rng.normal(0.0, 1.0, size=3) * np.array([0.004, 0.004, 0.018]) * severity
        jitter = rng.normal(0.0, 1.0, size=(num_frames, 3)) * np.array([0.002, 0.002, 0.005]) * severity
        transl = transl + torch.from_numpy(bias + jitter)
        scale = bone_scale * (1.0 + float(rng.normal(0.0, 0.03 * severity)))

        angles_t = skeleton.clamp_angles(torch.from_numpy(angles))
        rebuilt = skeleton.to_d162(wrist_rot, transl, skeleton.joint_rotations_from_angles(angles_t), bone_scale=scale)
        if slot == 0:
            rebuilt = mirror_motion(rebuilt)
        noisy[:, slot] = rebuilt.numpy()

    # Dropped frames: hold the last tracked pose; and sometimes a one-frame lag.
    for _ in range(int(rng.poisson(0.8 * severity))):
        start = int(rng.integers(1, max(2, num_frames)))
        length = int(rng.integers(1, 5))
        noisy[start : start + length] = noisy[start - 1]
    if rng.uniform() < 0.2 and num_frames > 1:
        noisy[1:] = noisy[:-1].copy()
    return noisy.astype(np.float32), round(confidence, 4)


def mpjpe_mm(prediction: np.ndarray, target: np.ndarray, hands_present: tuple[bool, bool]) -> float:
    """Mean per-joint position error (millimetres) over present hands, for reporting the pseudo-label noise."""
    errors = []
    for slot, present in enumerate(hands_present):
        if present:
            a = prediction[:, slot, 99:].reshape(-1, 21, 3)
            b = target[:, slot, 99:].reshape(-1, 21, 3)
            errors.append(np.linalg.norm(a - b, axis=-1).mean())
    return float(np.mean(errors) * 1000.0) if errors else math.nan
