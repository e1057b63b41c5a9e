"""Build the Space's example gallery: procedural lab/wild first frames with ground truth, and real hand frames.

    python spaces/jala_demo/build_examples.py                      # defaults below
    python spaces/jala_demo/build_examples.py --dataset outputs/quickstart/unihand_mix --per_split 3

Why a build step instead of reading the data at run time: a Space holds only its own folder, so the examples
must be small files next to `app.py`; and real clips need their first frame extracted (rotation tags, GIF
captions) and their licences carried along. The output folder is generated (git-ignored) and contains:

* `index.json`: one entry per example (image, instruction, hands, camera intrinsics, ground-truth motion file);
  `inference.load_examples` reads it.
* `lab_*.jpg`, `wild_*.jpg` + `*_motion.npy`: held-out `test_lab` / `test_wild` clips of a UniHand-Mix repo
  (the quickstart dataset by default): the stored first frame as is, the exact (T, 2, 162) labels, the
  row's intrinsics. These are the examples with metrics.
* `*_mean_motion.npy`: the mean-motion baseline for that clip, (2, T, 21, 3) joints: the per-frame mean of the
  same repo's labelled train clips (`trainers/motion_baselines.py`), so the metrics box can show what predicting
  the average motion, blind to frame and instruction, scores. Fitting needs the training clips, which the Space
  does not hold; hence here. Skipped (with a warning) when the repo has no labelled train clips.
* `real_*.jpg`: one frame of a clip or photo in the shared hand-data folder, resized to at most 640 px, with
  the source, licence and changes listed in `ATTRIBUTION.md` (parsed from that folder's SOURCES.md). They
  have no ground truth and no calibration (the Space assumes a 60-degree horizontal field of view).

Missing inputs are skipped with a warning, so the script also works where only one of the two sources exists.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

logger = logging.getLogger("jala.space.build_examples")

SPACE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SPACE_DIR.parent.parent
DEFAULT_OUT = SPACE_DIR / "examples"
DEFAULT_DATASET = REPO_ROOT / "outputs" / "quickstart" / "unihand_mix"
DEFAULT_HANDS_DIR = REPO_ROOT.parent / "shared" / "data" / "hands"
REAL_MAX_SIDE = 640
INDEX_VERSION = 1


@dataclass(frozen=True)
class RealExample:
    """A curated real frame: which file, which frame, what to ask for, and an optional crop (x0, y0, x1, y1)."""

    file: str
    title: str
    instruction: str
    hands: str
    frame_index: int = 0
    crop: tuple[int, int, int, int] | None = None
    note: str = ""


#: Frames where a hand (or the object it will act on) is in view; instructions in the dataset's phrasing.
REAL_EXAMPLES: tuple[RealExample, ...] = (
    RealExample(
        "egocentric_phone_photo_hand_reaching_table_objects.png",
        "Real: reach on a table",
        "Pick up the blue cup",
        "right",
    ),
    RealExample("egocentric_phone_photo_hand_over_sink.jpg", "Real: over a sink", "Release the white ball", "right"),
    RealExample(
        "hands_grasp_mug_on_table_box_overlay.gif",
        "Real: two hands, a mug",
        "Grasp the white mug with both hands",
        "both",
        note="detector boxes and captions drawn by the source",
    ),
    RealExample(
        "right_hand_finger_motions_front_view.mp4", "Real: raised right hand", "Wave your right hand", "right"
    ),
    RealExample(
        "fridge_drawer_place_banana.mov",
        "Real: fridge drawer",
        "Put the banana into the drawer",
        "right",
        note="HEVC phone video with a rotation tag",
    ),
    RealExample(
        "webcam_gesture_pointing_one_finger.gif",
        "Real: pointing (IPN Hand)",
        "Point at the camera with one finger",
        "right",
        frame_index=9,  # frames 0-8 fade in from white
        crop=(20, 44, 260, 224),  # drop the caption band and white margins
    ),
)


def _source_records(sources_md: Path) -> dict[str, dict[str, str]]:
    """Per file of SOURCES.md's "Per-file details": its Origin and Licence lines, verbatim."""
    records: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in sources_md.read_text(encoding="utf-8").splitlines():
        header = re.match(r"^### `(.+?)`", line)
        if header:
            current = records.setdefault(header.group(1), {})
            continue
        if current is None:
            continue
        field = re.match(r"^- (Origin|Licence|Shows): (.*)$", line)
        if field:
            current[field.group(1).lower()] = field.group(2).strip()
    return records


def _real_frame(path: Path, spec: RealExample) -> tuple[Image.Image, bool]:
    """The frame `spec.frame_index` of an image or video, upright, cropped, at most REAL_MAX_SIDE px; and
    whether it had to be shrunk."""
    if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
        with Image.open(path) as pil:
            image = ImageOps.exif_transpose(pil).convert("RGB")
    else:
        from dataset_scripts.video.decode import iter_frames, probe_video

        frame = next(iter_frames(probe_video(path), [spec.frame_index]))
        image = Image.fromarray(frame.image)
    if spec.crop is not None:
        image = image.crop(spec.crop)
    before = image.size
    image.thumbnail((REAL_MAX_SIDE, REAL_MAX_SIDE), Image.LANCZOS)  # no-op when already small enough
    return image, image.size != before


def _licence_short(licence: str) -> str:
    return "CC BY 4.0" if licence.startswith("CC BY 4.0") else licence.split(".")[0]


def build_real(out: Path, hands_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Real frames + their attribution lines; files missing from `hands_dir` are skipped with a warning."""
    sources_md = hands_dir / "SOURCES.md"
    if not sources_md.is_file():
        logger.warning("no %s: real examples skipped (pass --hands_dir to the shared hand-data folder)", sources_md)
        return [], []
    records = _source_records(sources_md)
    entries, attribution = [], []
    for number, spec in enumerate(REAL_EXAMPLES, start=1):
        path = hands_dir / spec.file
        record = records.get(spec.file)
        if not path.is_file() or record is None or "licence" not in record:
            logger.warning("skipping %s: file or its SOURCES.md licence entry is missing", spec.file)
            continue
        try:
            image, shrunk = _real_frame(path, spec)
        except Exception as error:  # a codec missing here must not stop the other examples
            logger.warning("skipping %s: %s", spec.file, error)
            continue
        name = f"real_{number}"
        image.save(out / f"{name}.jpg", quality=90)
        licence = record["licence"]
        changes = [f"frame {spec.frame_index} extracted" if spec.frame_index else "first frame extracted"]
        if spec.crop:
            changes.append(f"cropped to {spec.crop}")
        if shrunk:
            changes.append(f"resized to {image.width}x{image.height}")
        origin = record.get("origin", "unknown origin")
        entries.append(
            {
                "name": name,
                "title": spec.title,
                "kind": "real",
                "image": f"{name}.jpg",
                "instruction": spec.instruction,
                "hands": spec.hands,
                "source_file": spec.file,
                "credit": f"{_licence_short(licence)}; {origin.split(',')[0]}",
            }
        )
        line = f"- `{name}.jpg` from `{spec.file}`. Origin: {origin}. Licence: {licence}. "
        line += f"Changes: {', '.join(changes)}."
        if spec.note:
            line += f" Note: {spec.note}."
        attribution.append(line)
        logger.info("real example %s <- %s", name, spec.file)
    return entries, attribution


def _pick_rows(repo: Path, split: str, count: int) -> list[dict[str, Any]]:
    """The first `count` labelled clips of a split in stored order, instruction-generation tasks first (their
    instruction asks for the motion, which is what the Space shows), varied in which hands act."""
    from dataset_scripts.streaming import UniHandStream

    stream = UniHandStream(repo, split=split, infinite=False, shuffle=False, rank=0, world_size=1)
    labelled = [row for row in stream if row["labelled"] and row["motion"] is not None]
    generation = [row for row in labelled if row.get("task_type") == "motion_generation"]
    rest = [row for row in labelled if row.get("task_type") != "motion_generation"]
    chosen: list[dict[str, Any]] = []
    seen: set[tuple[bool, ...]] = set()
    for row in generation:  # one of each hand combination first
        key = tuple(bool(v) for v in row["hands_present"])
        if key not in seen and len(chosen) < count:
            chosen.append(row)
            seen.add(key)
    for row in generation + rest:
        if len(chosen) >= count:
            break
        if all(row["id"] != c["id"] for c in chosen):
            chosen.append(row)
    return chosen


def _hand_choice(present: Sequence[bool]) -> str:
    left, right = (bool(v) for v in present)
    return "both" if left and right else ("left" if left else "right")


def _mean_motion_baseline(dataset: Path) -> tuple[Any, int]:
    """The mean-motion baseline fitted on the repo's labelled train clips and how many, or (None, 0)."""
    from trainers.motion_baselines import MeanMotionBaseline, load_training_rows

    try:
        rows = load_training_rows(dataset)
        return MeanMotionBaseline.fit(rows), len(rows)
    except (ValueError, FileNotFoundError) as error:
        logger.warning("no mean-motion baseline for the examples (%s)", error)
        return None, 0


def build_procedural(out: Path, dataset: Path, per_split: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Held-out lab and wild clips of a UniHand-Mix repo, with exact labels, as examples with metrics."""
    if not (dataset / "data").is_dir():
        logger.warning(
            "no UniHand-Mix repo at %s: procedural examples skipped (run `make quickstart` or pass --dataset)",
            dataset,
        )
        return [], []
    mean_motion, train_clips = _mean_motion_baseline(dataset)
    entries, attribution = [], []
    for split, kind in (("test_lab", "lab"), ("test_wild", "wild")):
        try:
            rows = _pick_rows(dataset, split, per_split)
        except (ValueError, FileNotFoundError) as error:
            logger.warning("no %s clips in %s (%s); skipped", split, dataset, error)
            continue
        for number, row in enumerate(rows, start=1):
            name = f"{kind}_{number}"
            frame = row["first_frame"]
            data = frame.get("bytes") or Path(frame["path"]).read_bytes()
            with Image.open(io.BytesIO(data)) as pil:
                suffix = ".jpg" if pil.format == "JPEG" else ".png"
                if suffix == ".png":
                    pil.convert("RGB").save(out / f"{name}{suffix}")
            if suffix == ".jpg":
                (out / f"{name}{suffix}").write_bytes(data)  # the stored JPEG, bit for bit
            motion = np.asarray(row["motion"], dtype=np.float32)
            np.save(out / f"{name}_motion.npy", motion)
            present = [bool(v) for v in row["hands_present"]]
            baseline = {}
            if mean_motion is not None:
                joints = np.stack([mean_motion.predict(row, hand, len(motion)) for hand in range(2)])
                np.save(out / f"{name}_mean_motion.npy", joints.astype(np.float32))
                baseline = {"mean_motion": f"{name}_mean_motion.npy", "mean_motion_train_clips": train_clips}
            entries.append(
                {
                    "name": name,
                    "title": f"{kind.capitalize()} {number}: {row['instruction']}",
                    "kind": kind,
                    "image": f"{name}{suffix}",
                    "instruction": row["instruction"],
                    "hands": _hand_choice(present),
                    "hands_present": present,
                    "intrinsics": [float(v) for v in row["camera_intrinsics"]],
                    "motion": f"{name}_motion.npy",
                    "num_frames": int(row["num_frames"]),
                    "source_id": row["id"],
                    "credit": f"procedural hand world ({row.get('source', 'synthetic')}), held-out {split} clip",
                    **baseline,
                }
            )
            attribution.append(
                f"- `{name}{suffix}`, `{name}_motion.npy`: clip `{row['id']}` ({split}) of `{_display(dataset)}`, "
                "rendered and labelled by this project's procedural hand world; same licence as the project "
                "(Apache-2.0)."
                + (
                    f" `{name}_mean_motion.npy`: the per-frame mean of its {train_clips} labelled train clips."
                    if mean_motion is not None
                    else ""
                )
            )
            logger.info("%s example %s <- %s", kind, name, row["id"])
    return entries, attribution


def _display(path: Path) -> str:
    """A path relative to the repository when it lies inside it (no machine-specific prefixes in the files)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _prepare(out: Path) -> None:
    if out.exists():
        if (out / "index.json").is_file():
            shutil.rmtree(out)  # a previous build of this script: rebuild from scratch
        elif any(out.iterdir()):
            raise FileExistsError(
                f"--out {out} exists and was not written by this script (no index.json); pass an empty folder."
            )
    out.mkdir(parents=True, exist_ok=True)


def build_examples(
    out: str | Path = DEFAULT_OUT,
    dataset: str | Path | None = DEFAULT_DATASET,
    hands_dir: str | Path | None = DEFAULT_HANDS_DIR,
    per_split: int = 3,
) -> list[dict[str, Any]]:
    """Write the example folder (see the module docstring); returns the index entries."""
    if per_split < 0:
        raise ValueError(f"per_split must be >= 0, got {per_split}.")
    out = Path(out)
    _prepare(out)
    procedural, procedural_credits = build_procedural(out, Path(dataset), per_split) if dataset else ([], [])
    real, real_credits = build_real(out, Path(hands_dir)) if hands_dir else ([], [])
    entries = procedural + real
    index = {
        "version": INDEX_VERSION,
        "built": datetime.now(tz=UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "dataset": _display(Path(dataset)) if procedural and dataset else None,
        "hands_dir": _display(Path(hands_dir)) if real and hands_dir else None,
        "examples": entries,
    }
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    lines = [
        "# Example frames: sources and licences",
        "",
        f"Generated by `spaces/jala_demo/build_examples.py` on {index['built']}. Do not edit; rebuild instead.",
        "",
        "## Procedural frames",
        "",
        *(procedural_credits or ["(none built)"]),
        "",
        "## Real frames",
        "",
        "Taken from the project's shared hand-data folder; origins and licences as recorded in its SOURCES.md.",
        "",
        *(real_credits or ["(none built)"]),
    ]
    if any(entry.get("source_file") == "webcam_gesture_pointing_one_finger.gif" for entry in real):
        lines += [
            "",
            "The IPN Hand frame is licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). "
            'Attribution: G. Benitez-Garcia, J. Olivares-Mercado, G. Sanchez-Perez and K. Yanai, "IPN Hand: A '
            'Video Dataset and Benchmark for Real-Time Continuous Hand Gesture Recognition", ICPR 2020, '
            "https://github.com/GibranBenitez/IPN-hand. Changed: one frame extracted, caption cropped, resized.",
        ]
    (out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.info("wrote %d examples (%d procedural, %d real) to %s", len(entries), len(procedural), len(real), out)
    return entries


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="examples folder (default: %(default)s)")
    parser.add_argument(
        "--dataset", type=Path, default=DEFAULT_DATASET, help="UniHand-Mix repo for lab/wild examples (%(default)s)"
    )
    parser.add_argument(
        "--hands_dir",
        type=Path,
        default=DEFAULT_HANDS_DIR,
        help="shared real hand clips with SOURCES.md (%(default)s)",
    )
    parser.add_argument("--per_split", type=int, default=3, help="examples from each of test_lab and test_wild")
    parser.add_argument("--no_real", action="store_true", help="skip the real frames")
    parser.add_argument("--no_procedural", action="store_true", help="skip the procedural frames")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    return build_examples(
        args.out,
        dataset=None if args.no_procedural else args.dataset,
        hands_dir=None if args.no_real else args.hands_dir,
        per_split=args.per_split,
    )


if __name__ == "__main__":
    main()
