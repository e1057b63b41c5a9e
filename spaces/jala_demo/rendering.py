"""Pictures of predicted hand motion: skeleton overlays on the first frame (an animated GIF) and a 3D plot.

Why these are plain functions of arrays: the Space's value is in *seeing* whether the motion fits the scene, so
the projection and the drawing must be right, and they are checked by unit tests without a model or a browser.

Conventions (as the rest of the project): joints are camera-frame metres in the OpenCV frame (+x right, +y down,
+z forward), hands are ordered (left, right), 15 fps. Intrinsics are (fx, fy, cx, cy) in pixels with pixel
centres at integer coordinates, as the UniHand-Mix `camera_intrinsics` column. When a frame's camera is unknown
(uploads), `assumed_intrinsics` puts a pinhole with a 60-degree horizontal field of view at the image centre:
the predicted motion is still in metres, only its overlay depends on this guess.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from modeling_jala.hand_jala import JOINTS_XYZ, NUM_JOINTS, hand_skeleton_edges
from modeling_jala.layout_jala import CLIP_MOTION_AXES, FPS, HANDS, ROW_MOTION_AXES, reorder_axes

logger = logging.getLogger(__name__)

Intrinsics = tuple[float, float, float, float]

#: Colour per hand (left, right); ground truth is drawn in white under the prediction.
HAND_COLOURS: tuple[tuple[int, int, int], tuple[int, int, int]] = ((59, 130, 246), (249, 115, 22))
TRUTH_COLOUR = (255, 255, 255)
FINGERTIPS: tuple[int, ...] = (4, 8, 12, 16, 20)
WRIST = 0
DEFAULT_FOV_DEG = 60.0
DISPLAY_LONG_SIDE = 512
_MIN_DEPTH_M = 0.01
_CAPTION_HEIGHT = 24


def assumed_intrinsics(width: int, height: int, fov_deg: float = DEFAULT_FOV_DEG) -> Intrinsics:
    """A pinhole with `fov_deg` across the image width, square pixels, principal point at the centre.

    Uploaded photos carry no calibration; 60 degrees is close to the procedural world's lab camera (about 58
    degrees) and to typical phone main cameras, so overlays land in the right part of the frame."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}.")
    if not 1.0 < fov_deg < 179.0:
        raise ValueError(f"fov_deg must be in (1, 179) degrees, got {fov_deg}.")
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    return (focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)


def scale_intrinsics(intrinsics: Sequence[float], sx: float, sy: float) -> Intrinsics:
    """The same camera after resizing the image by (sx, sy), pixel centres at integers (u' = s (u + 0.5) - 0.5)."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    return (fx * sx, fy * sy, sx * (cx + 0.5) - 0.5, sy * (cy + 0.5) - 0.5)


def resize_for_display(
    image: np.ndarray, intrinsics: Sequence[float], long_side: int = DISPLAY_LONG_SIDE
) -> tuple[np.ndarray, Intrinsics]:
    """Scale the frame so its longer side is `long_side` (up or down) and the intrinsics with it.

    Upscaling the 224 px procedural frames before drawing keeps skeleton lines thin and smooth."""
    height, width = image.shape[:2]
    scale = long_side / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (new_w, new_h) == (width, height):
        return image, tuple(float(v) for v in intrinsics)  # type: ignore[return-value]
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BICUBIC))
    return resized, scale_intrinsics(intrinsics, new_w / width, new_h / height)


def project_points(points: np.ndarray, intrinsics: Sequence[float]) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixels; NaN for points less than 1 cm in front of the camera."""
    fx, fy, cx, cy = (float(v) for v in intrinsics)
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape (..., 3) (camera-frame xyz in metres), got {points.shape}.")
    z = points[..., 2]
    safe = np.where(z > _MIN_DEPTH_M, z, np.nan)
    return np.stack((fx * points[..., 0] / safe + cx, fy * points[..., 1] / safe + cy), axis=-1)


def joints_from_motion(motion: np.ndarray) -> np.ndarray:
    """(T, 2, 162) MANO-D162 (the dataset layout) -> (2, T, 21, 3) joints (the model output layout)."""
    motion = np.asarray(motion, dtype=np.float32)
    if motion.ndim != 3 or motion.shape[1:] != (2, 162):
        raise ValueError(f"motion must have shape (T, 2, 162) (frames, left/right, MANO-D162), got {motion.shape}.")
    joints = motion[..., JOINTS_XYZ].reshape(motion.shape[0], 2, NUM_JOINTS, 3)
    return reorder_axes(joints, (*ROW_MOTION_AXES[:2], "joint", "xyz"), (*CLIP_MOTION_AXES[:2], "joint", "xyz"))


def _check_joints(joints: np.ndarray, present: Sequence[bool], name: str) -> tuple[np.ndarray, np.ndarray]:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 4 or joints.shape[0] != 2 or joints.shape[2:] != (NUM_JOINTS, 3):
        raise ValueError(
            f"{name} must have shape (2, T, 21, 3) (left/right, frames, joints, xyz), got {joints.shape}."
        )
    flags = np.asarray(present, dtype=bool)
    if flags.shape != (2,):
        raise ValueError(f"{name}: hands_present must be two booleans (left, right), got {flags.tolist()}.")
    return joints, flags


def _drawable(pixels: np.ndarray, limit: float = 1e5) -> np.ndarray:
    """NaN for projections far outside any canvas: an untrained model can put joints just in front of the
    camera, and coordinates beyond C int range would make the drawing library fail instead of clipping."""
    return np.where(np.abs(pixels) > limit, np.nan, pixels)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _draw_hand(draw: ImageDraw.ImageDraw, pixels: np.ndarray, colour: tuple[int, int, int], width: int) -> None:
    for parent, child in hand_skeleton_edges():
        a, b = pixels[parent], pixels[child]
        if np.isfinite(a).all() and np.isfinite(b).all():
            draw.line((*a, *b), fill=colour, width=width)
    radius = width * 0.9
    for index, (u, v) in enumerate(pixels):
        if math.isfinite(u) and math.isfinite(v):
            r = radius * 1.8 if index == WRIST else radius
            draw.ellipse((u - r, v - r, u + r, v + r), fill=colour)


def overlay_frames(
    image: np.ndarray,
    joints: np.ndarray,
    hands_present: Sequence[bool],
    intrinsics: Sequence[float],
    truth_joints: np.ndarray | None = None,
    truth_present: Sequence[bool] | None = None,
    fps: float = FPS,
) -> list[Image.Image]:
    """One RGB frame per time step: the first frame with the projected skeleton(s) and a caption strip.

    Args:
        image: (H, W, 3) uint8, the frame the joints are projected onto (already at display size).
        joints: (2, T, 21, 3) predicted camera-frame joints (left, right); hands not present are ignored.
        hands_present: which of (left, right) were predicted.
        intrinsics: (fx, fy, cx, cy) of `image`.
        truth_joints / truth_present: ground truth in the same layout, drawn in white under the prediction
            for the frames it covers.
    """
    joints, present = _check_joints(joints, hands_present, "joints")
    truth = None
    if truth_joints is not None:
        truth, truth_flags = _check_joints(
            truth_joints, truth_present if truth_present is not None else (True, True), "truth_joints"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got {image.shape}.")
    height, width = image.shape[:2]
    pixels = _drawable(project_points(joints, intrinsics))  # (2, T, 21, 2)
    truth_pixels = _drawable(project_points(truth, intrinsics)) if truth is not None else None
    line = max(2, round(max(width, height) / 220))
    font = _font(14)
    base = Image.new("RGB", (width, height + _CAPTION_HEIGHT), (24, 24, 27))
    base.paste(Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)), (0, 0))
    frames = []
    steps = joints.shape[1]
    for t in range(steps):
        frame = base.copy()
        draw = ImageDraw.Draw(frame)
        if truth_pixels is not None and t < truth_pixels.shape[1]:
            for hand in range(2):
                if truth_flags[hand]:
                    _draw_hand(draw, truth_pixels[hand, t], TRUTH_COLOUR, max(1, line - 1))
        for hand in range(2):
            if not present[hand]:
                continue
            trail = pixels[hand, : t + 1, WRIST]
            trail = trail[np.isfinite(trail).all(axis=-1)]
            if len(trail) > 1:
                draw.line([tuple(p) for p in trail], fill=HAND_COLOURS[hand], width=1)
            _draw_hand(draw, pixels[hand, t], HAND_COLOURS[hand], line)
        _caption(draw, t, steps, fps, present, truth is not None, height, font)
        frames.append(frame)
    return frames


def _caption(
    draw: ImageDraw.ImageDraw,
    t: int,
    steps: int,
    fps: int,
    present: np.ndarray,
    has_truth: bool,
    top: int,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    x, y = 6, top + 4
    text = f"t = {t / fps:4.2f} s  ({t + 1}/{steps})"
    draw.text((x, y), text, fill=(230, 230, 230), font=font)
    x += draw.textlength(text, font=font) + 14
    for hand in range(2):
        if present[hand]:
            draw.rectangle((x, y + 3, x + 10, y + 13), fill=HAND_COLOURS[hand])
            draw.text((x + 14, y), HANDS[hand], fill=(230, 230, 230), font=font)
            x += 14 + draw.textlength(HANDS[hand], font=font) + 12
    if has_truth:
        draw.rectangle((x, y + 3, x + 10, y + 13), fill=TRUTH_COLOUR)
        draw.text((x + 14, y), "ground truth", fill=(230, 230, 230), font=font)


def gif_durations(count: int, fps: float = FPS) -> list[int]:
    """Per-frame delays in ms that keep the clip's real speed: GIF stores centiseconds, so a constant 67 ms
    would play 15 fps motion at 16.7 fps; alternating 70/60/70 ms keeps the cumulative time exact."""
    ends = [round((k + 1) * 100 / fps) * 10 for k in range(count)]
    return [end - start for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def save_gif(frames: Sequence[Image.Image], path: str | Path, fps: float = FPS) -> Path:
    """Write an endlessly looping GIF at `fps`, one shared palette for all frames.

    A shared palette that includes the overlay colours keeps skeleton colours exact and avoids per-frame
    flicker; GIF (not MP4) because every browser plays it in an <img> without codec questions."""
    if not frames:
        raise ValueError("frames is empty; nothing to animate (was num_chunks 0?).")
    path = Path(path)
    first = frames[0]
    swatch = Image.new("RGB", (first.width, 12))
    colours = [*HAND_COLOURS, TRUTH_COLOUR, (24, 24, 27), (230, 230, 230)]
    stripe = max(1, first.width // len(colours))
    for index, colour in enumerate(colours):
        swatch.paste(colour, (index * stripe, 0, (index + 1) * stripe, 12))
    source = Image.new("RGB", (first.width, first.height + 12 * 8))
    source.paste(first, (0, 0))
    for row in range(8):  # weight: median cut must not merge the overlay colours away
        source.paste(swatch, (0, first.height + 12 * row))
    palette = source.quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    indexed = [frame.quantize(palette=palette, dither=Image.Dither.NONE) for frame in frames]
    indexed[0].save(path, save_all=True, append_images=indexed[1:], duration=gif_durations(len(frames), fps), loop=0)
    logger.debug("wrote %s (%d frames)", path, len(frames))
    return path


def _plot_coordinates(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Camera frame -> plot axes: x right, depth (z) into the plot, up (-y) up."""
    return points[..., 0], points[..., 2], -points[..., 1]


def trajectory_figure(
    joints: np.ndarray,
    hands_present: Sequence[bool],
    truth_joints: np.ndarray | None = None,
    truth_present: Sequence[bool] | None = None,
    title: str = "",
) -> Figure:
    """A 3D matplotlib figure of the wrist and the five fingertips over time, per hand; ground truth dashed.

    Built on `matplotlib.figure.Figure` (not pyplot) so that figures are garbage-collected per request instead
    of piling up in pyplot's global registry on a long-running server."""
    joints, present = _check_joints(joints, hands_present, "joints")
    figure = Figure(figsize=(6.4, 5.2), dpi=100, layout="tight")
    axes = figure.add_subplot(projection="3d")
    everything = []
    for hand in range(2):
        if not present[hand]:
            continue
        colour = tuple(c / 255 for c in HAND_COLOURS[hand])
        x, y, z = _plot_coordinates(joints[hand, :, WRIST])
        axes.plot(x, y, z, color=colour, linewidth=2.6, label=f"{HANDS[hand]} wrist (fingertips thin)")
        axes.scatter([x[0]], [y[0]], [z[0]], color=colour, marker="o", s=30)
        axes.scatter([x[-1]], [y[-1]], [z[-1]], color=colour, marker="^", s=40)
        for tip in FINGERTIPS:
            axes.plot(*_plot_coordinates(joints[hand, :, tip]), color=colour, linewidth=0.9, alpha=0.55)
        everything.append(joints[hand][:, [WRIST, *FINGERTIPS]].reshape(-1, 3))
    if truth_joints is not None:
        truth, truth_flags = _check_joints(
            truth_joints, truth_present if truth_present is not None else (True, True), "truth_joints"
        )
        for hand in range(2):
            if truth_flags[hand]:
                axes.plot(
                    *_plot_coordinates(truth[hand, :, WRIST]),
                    color="0.35",
                    linestyle="--",
                    linewidth=1.8,
                    label=f"{HANDS[hand]} wrist, ground truth",
                )
                everything.append(truth[hand][:, [WRIST]].reshape(-1, 3))
    if everything:
        points = np.concatenate(everything)
        points = points[np.isfinite(points).all(axis=1)]
        if len(points):
            x, y, z = _plot_coordinates(points)
            centre = np.array([x.mean(), y.mean(), z.mean()])
            half = max(0.05, 0.55 * float(np.ptp(np.stack([x, y, z]), axis=1).max()))
            axes.set_xlim(centre[0] - half, centre[0] + half)
            axes.set_ylim(centre[1] - half, centre[1] + half)
            axes.set_zlim(centre[2] - half, centre[2] + half)
        figure.legend(loc="lower center", ncols=2, fontsize=8, frameon=False)
    axes.set_xlabel("x, right (m)")
    axes.set_ylabel("z, depth (m)")
    axes.set_zlabel("up, -y (m)")
    if title:
        axes.set_title(title, fontsize=10)
    axes.view_init(elev=18, azim=-62)
    return figure
