"""Referring-localisation data from the procedural hand world: "the pink cup" + a first frame -> where that object is.

One home for the queries that `trainers/train_grounding_vlm.py` trains the stand-in VLM on and that
`benchmarks/grounding_probe.py` measures with: scenes rendered afresh at a seed the dataset builds do not use (frames
made exactly as dataset rows are, `render_frame`), and the held-out clips' first frames with their scene JSON.
A query knows its object's camera-frame position (metres) and where its centre falls in the image (fractions of the
width and height), so a trainer can supervise a position and a cell of any image-token grid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from dataset_scripts.hand_world.geometry import project
from dataset_scripts.hand_world.instructions import NOUNS
from modeling_jala.layout_jala import HANDS
from trainers.motion_baselines import labelled_rows

#: The procedural world's seed for grounding scenes; dataset builds (quickstart, tests) use small seeds.
GROUNDING_WORLD_SEED = 1000

#: The held-out splits grounding is scored on (their first frames and scene JSON).
HELD_OUT_SPLITS = ("test_lab", "test_wild")


class GroundingQuery(NamedTuple):
    """One object of one frame: the frame as stored, its colour and kind, its camera-frame position (metres) and
    its centre in the image as (u / width, v / height), each in [0, 1] when the centre is inside the frame.

    A referring query names the object by a phrase (`text` None: "the pink cup"); an instruction-target query has the
    clip's instruction as `text` and asks where hand `hand` (an index into `HANDS`) goes first."""

    frame: Any
    colour: str
    kind: str
    position: np.ndarray
    image_xy: np.ndarray
    text: str | None = None
    hand: int = 0


def scene_queries(frame: Any, scene: dict[str, Any]) -> list[GroundingQuery]:
    """Every object of a scene JSON (its `objects` and `camera` entries) as a query on `frame`."""
    camera = scene["camera"]
    width, height = camera["image_size"]
    queries = []
    for obj in scene["objects"]:
        position = np.asarray(obj["position_camera"], np.float32)
        pixel = project(position.astype(np.float64), tuple(camera["intrinsics"]))
        image_xy = (pixel / np.array([width, height], np.float64)).astype(np.float32)
        queries.append(GroundingQuery(frame, obj["colour"], obj["type"], position, image_xy))
    return queries


class HandScenePositions(NamedTuple):
    """One hand's view of a scene JSON (camera frame, metres): its wrist start (zeros when not recorded), its first
    target object's position (None when it has none), every object's position (M, 3), and the object nearest the
    start (None without objects)."""

    start: np.ndarray
    target: np.ndarray | None
    objects: np.ndarray
    nearest: np.ndarray | None


def hand_scene_positions(scene: dict[str, Any], hand: str) -> HandScenePositions:
    """The positions a reader of the scene JSON has for hand `hand` (one of `HANDS`)."""
    start = np.asarray(scene["hand_starts"].get(hand, {}).get("wrist_camera", np.zeros(3)), np.float64)
    named = {obj["name"]: np.asarray(obj["position_camera"], np.float64) for obj in scene["objects"]}
    objects = np.stack(list(named.values())) if named else np.zeros((0, 3))
    nearest = objects[np.argmin(np.linalg.norm(objects - start, axis=1))] if len(objects) else None
    return HandScenePositions(start, named.get(scene["motion"]["targets"].get(hand)), objects, nearest)


def instruction_target_queries(
    objects: Sequence[GroundingQuery], instruction: str, scene: dict[str, Any]
) -> list[GroundingQuery]:
    """One query per hand the clip moves towards an object: the instruction as text, that hand's first target
    (`scene["motion"]["targets"]`) as the answer, taken from `objects` (the frame's `scene_queries`)."""
    by_name = {obj["name"]: query for obj, query in zip(scene["objects"], objects, strict=True)}
    targets = scene.get("motion", {}).get("targets", {})
    return [
        by_name[targets[hand]]._replace(text=instruction, hand=index)
        for index, hand in enumerate(HANDS)
        if targets.get(hand) in by_name
    ]


def grid_cell(image_xy: np.ndarray, grid: int) -> int:
    """Row-major index of the cell of a `grid` x `grid` image-token grid that holds a point (clamped to the frame),
    the order InternVL lays out its image tokens after pixel shuffle."""
    column = min(max(math.floor(float(image_xy[0]) * grid), 0), grid - 1)
    row = min(max(math.floor(float(image_xy[1]) * grid), 0), grid - 1)
    return row * grid + column


def phrase(colour: str, kind: str, rng: np.random.Generator | None = None) -> str:
    """'the pink cup': the way instructions name an object (a random synonym when `rng` is given, else the first)."""
    nouns = NOUNS[kind]
    return f"the {colour} {nouns[0] if rng is None else rng.choice(nouns)}"


def render_scenes(
    count: int,
    seed: int = GROUNDING_WORLD_SEED,
    image_size: tuple[int, int] = (224, 224),
    instruction_targets: bool = False,
) -> list[list[GroundingQuery]]:
    """First frames of `count` fresh procedural scenes (half lab, half wild), each with its objects as queries (or,
    with `instruction_targets`, its instruction's per-hand targets)."""
    from dataset_scripts.hand_world.clip import WorldOptions, load_scene, plan_clip_spec, render_frame
    from dataset_scripts.hand_world.renderer import SceneRenderer

    scenes = []
    domains = {"lab": count - count // 2, "wild": count // 2}
    with SceneRenderer(*image_size) as renderer:
        for domain, number in domains.items():
            options = WorldOptions(domain=domain, split="train", seed=seed, image_size=image_size)
            for index in tqdm(range(number), desc=f"rendering {domain} scenes", unit="scene"):
                spec = plan_clip_spec(options, index)
                load_scene(renderer, spec)
                objects = scene_queries(render_frame(renderer, spec, 0), spec.scene)
                if instruction_targets:
                    scenes.append(instruction_target_queries(objects, spec.instruction, spec.scene))
                else:
                    scenes.append(objects)
    return [scene for scene in scenes if scene]


def held_out_scenes(
    dataset: str | Path, split: str, clips: int, instruction_targets: bool = False
) -> list[list[GroundingQuery]]:
    """The first frames of a split's first `clips` labelled clips, with their scenes' objects (or their
    instructions' per-hand targets)."""
    targets, objects = held_out_targets_and_objects(dataset, split, clips)
    return [scene for scene in targets if scene] if instruction_targets else objects


def held_out_targets_and_objects(
    dataset: str | Path, split: str, clips: int
) -> tuple[list[list[GroundingQuery]], list[list[GroundingQuery]]]:
    """Per held-out clip (those with objects): its instruction's per-hand target queries and all its objects."""
    targets, objects = [], []
    for row in labelled_rows(dataset, split, clips):
        if not row.get("scene"):
            raise ValueError(
                f"{dataset} {split} row {row['id']} has no scene JSON; grounding needs procedural hand-world clips."
            )
        scene = json.loads(row["scene"])
        if scene["objects"]:
            objects.append(scene_queries(row["first_frame"], scene))
            targets.append(instruction_target_queries(objects[-1], row["instruction"], scene))
    return targets, objects


def baseline_errors(
    scenes: Sequence[Sequence[GroundingQuery]],
    global_mean: np.ndarray,
    frame_objects: Sequence[Sequence[GroundingQuery]] | None = None,
) -> dict[str, np.ndarray]:
    """Per-query 3D errors (metres) of two guesses that read no words: the training answers' mean position
    (`global mean`) and the mean of the frame's objects (`scene mean`: finds the objects, not the named one). The
    frame's objects are the scene's queries themselves, or `frame_objects[i]` for scene i (when the queries are
    an instruction's targets, a subset)."""
    errors: dict[str, list[float]] = {"global mean": [], "scene mean": []}
    for index, scene in enumerate(scenes):
        if not scene:
            continue
        positions = np.stack([query.position for query in scene])
        everything = scene if frame_objects is None else frame_objects[index]
        frame_mean = np.stack([query.position for query in everything]).mean(0)
        errors["global mean"] += list(np.linalg.norm(positions - global_mean, axis=1))
        errors["scene mean"] += list(np.linalg.norm(positions - frame_mean, axis=1))
    return {name: np.asarray(values) for name, values in errors.items()}


def summary_mm(errors: np.ndarray) -> dict[str, float]:
    """Mean error in mm and its standard error over queries."""
    return {"mm": float(1000 * errors.mean()), "se_mm": float(1000 * errors.std(ddof=1) / math.sqrt(len(errors)))}
