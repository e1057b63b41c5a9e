"""A contact sheet of hand-world clips (first and boundary frames, lab above wild), for eyeballing the data.

``python -m dataset_scripts.hand_world.preview --output /tmp/hand_world_preview.png`` renders a few lab and
wild clips with the same options the source uses; ``--overlay`` draws the projected label skeleton on each frame,
which shows at a glance whether labels and pixels agree.
"""

from __future__ import annotations

import argparse
import logging
import os
import textwrap

import numpy as np
from PIL import Image, ImageDraw

from modeling_jala.hand_jala import hand_skeleton_edges

from .clip import WorldOptions, load_scene, plan_clip_spec, pose_scene
from .geometry import project

logger = logging.getLogger(__name__)


def _overlay(
    image: np.ndarray, joints_camera: np.ndarray, intrinsics: tuple[float, float, float, float]
) -> Image.Image:
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    for hand in joints_camera:
        if not np.any(hand):
            continue
        uv = project(hand, intrinsics)
        for parent, child in hand_skeleton_edges():
            draw.line([tuple(uv[parent]), tuple(uv[child])], fill=(0, 255, 0), width=1)
        for u, v in uv:
            draw.ellipse([u - 1.5, v - 1.5, u + 1.5, v + 1.5], fill=(255, 0, 0))
    return pil


def contact_sheet(
    num_clips: int = 4,
    frames_per_clip: int = 3,
    image_size: int = 224,
    seed: int = 0,
    overlay: bool = False,
    domains: tuple[tuple[str, str], ...] = (("lab", "train"), ("wild", "train"), ("wild", "test_wild")),
) -> Image.Image:
    """Rows: one per (domain, split) and clip; columns: the first ``frames_per_clip`` boundary frames."""
    from .renderer import SceneRenderer

    tiles: list[list[Image.Image]] = []
    captions: list[str] = []
    with SceneRenderer(image_size, image_size) as renderer:
        for domain, split in domains:
            options = WorldOptions(domain=domain, split=split, seed=seed, image_size=(image_size, image_size))
            for index in range(num_clips):
                spec = plan_clip_spec(options, index)
                load_scene(renderer, spec)
                row = []
                frames = [min(15 * k, spec.motion.num_frames - 1) for k in range(frames_per_clip)]
                for frame in frames:
                    pose_scene(renderer, spec, frame)
                    image = renderer.render()
                    if overlay:
                        joints = spec.exact_labels[frame, :, 99:].reshape(2, 21, 3)
                        row.append(_overlay(image, joints, spec.look.camera.intrinsics(image_size, image_size)))
                    else:
                        row.append(Image.fromarray(image))
                tiles.append(row)
                captions.append(f"{domain}/{split} [{spec.layout.family}, {spec.look.camera.mode}] {spec.instruction}")
    caption_height = 14
    width = frames_per_clip * image_size
    sheet = Image.new("RGB", (width, len(tiles) * (image_size + caption_height)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for row_index, (row, caption) in enumerate(zip(tiles, captions, strict=True)):
        top = row_index * (image_size + caption_height)
        draw.text((2, top + 1), textwrap.shorten(caption, width=width // 6), fill=(0, 0, 0))
        for column, tile in enumerate(row):
            sheet.paste(tile, (column * image_size, top + caption_height))
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="/tmp/hand_world_preview.png", help="PNG to write")
    parser.add_argument("--num_clips", type=int, default=3, help="clips per (domain, split) row group")
    parser.add_argument("--frames_per_clip", type=int, default=4, help="boundary frames shown per clip")
    parser.add_argument("--image_size", type=int, default=224, help="square frame size in pixels")
    parser.add_argument("--seed", type=int, default=0, help="world seed")
    parser.add_argument("--overlay", action="store_true", help="draw the projected label skeleton")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("MUJOCO_GL", "egl")
    sheet = contact_sheet(args.num_clips, args.frames_per_clip, args.image_size, args.seed, args.overlay)
    sheet.save(args.output)
    logger.info("Wrote %s (%dx%d).", args.output, *sheet.size)


if __name__ == "__main__":
    main()
