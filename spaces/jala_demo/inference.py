"""The Space's model side: find and load a JALA folder, describe it, read the example catalogue, generate, score.

Why it is separate from `app.py`: these are the parts that can be wrong in ways a visitor cannot see (a random
model passed off as trained, metrics over misaligned frames, a checkpoint that is still being written), so they
are plain functions with unit tests. Loading goes only through `AutoModel.from_pretrained(path,
trust_remote_code=True)`, the way a Hub user loads the model; when no checkpoint exists the Space says so and
refuses to generate, it never builds a model with random weights.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modeling_jala.layout_jala import CHUNK_FRAMES, HANDS

logger = logging.getLogger(__name__)

SPACE_DIR = Path(__file__).resolve().parent
REPO_ROOT = SPACE_DIR.parent.parent
#: What `make quickstart` (`python -m trainers.quickstart`) writes; relative paths resolve against the repo root.
DEFAULT_MODEL = "outputs/quickstart/jala"
DEFAULT_EXAMPLES = SPACE_DIR / "examples"
MODEL_ENV = "JALA_MODEL"
CREATE_COMMAND = "make quickstart"
BUILD_EXAMPLES_COMMAND = "python spaces/jala_demo/build_examples.py"
EXAMPLE_KINDS = ("lab", "wild", "real")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelUnavailable(RuntimeError):
    """No usable checkpoint; the message is Markdown for the UI and names the command that creates one."""


# ------------------------------------------------------------------------------------------------------------
# Finding and loading the checkpoint
# ------------------------------------------------------------------------------------------------------------


def resolve_model_path(cli_value: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """`--model`, else `$JALA_MODEL`, else the quickstart folder; relative paths are tried from the current
    directory, then from the repository root (so `python spaces/jala_demo/app.py` works from anywhere)."""
    environ = os.environ if environ is None else environ
    value = cli_value or environ.get(MODEL_ENV) or DEFAULT_MODEL
    candidate = Path(value).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return str(candidate.resolve())
    in_repo = REPO_ROOT / candidate
    if in_repo.exists() or value == DEFAULT_MODEL:
        return str(in_repo)
    return value  # a Hub repo id, or a path that does not exist (reported by `checkpoint_problem`)


def checkpoint_problem(path: str, environ: Mapping[str, str] | None = None) -> str | None:
    """Why `path` cannot be a JALA checkpoint, or None when it looks loadable. Checked before loading so that
    a missing or half-written folder gets a precise message instead of a stack trace."""
    environ = os.environ if environ is None else environ
    folder = Path(path)
    if not folder.exists():
        offline = environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        if _HUB_ID.match(path) and not offline:
            return None  # let from_pretrained fetch it from the Hub
        return f"`{path}` does not exist."
    if not folder.is_dir():
        return f"`{path}` is a file; pass the folder that holds config.json and model.safetensors."
    if not (folder / "config.json").is_file():
        return f"`{path}` has no config.json, so it is not a saved model folder (or it is still being written)."
    if not any(folder.glob("*.safetensors")):
        return f"`{path}` has no *.safetensors weights yet (is training still writing it?)."
    return None


def no_model_message(path: str, reason: str | None = None) -> str:
    """The Markdown notice shown instead of generation when there is no checkpoint."""
    lines = [
        f"**No JALA checkpoint loaded.** {reason or ''}".rstrip(),
        "",
        "This Space only generates with a trained checkpoint; it never falls back to random weights. "
        f"Create the default one with `{CREATE_COMMAND}` (it writes `{DEFAULT_MODEL}/`), then restart the app, "
        f"or point the app at another folder saved by the pretraining script: "
        f"`python spaces/jala_demo/app.py --model PATH` or `{MODEL_ENV}=PATH`.",
    ]
    return "\n".join(lines)


@dataclass
class LoadedModel:
    """A loaded checkpoint with its processor and the facts the UI shows about it."""

    model: Any
    processor: Any
    path: str
    summary: list[tuple[str, str]] = field(default_factory=list)

    @property
    def default_decoding(self) -> tuple[int, int]:
        return int(self.model.config.decoding_steps), int(self.model.config.decoding_ensemble)


def load_model(path: str) -> LoadedModel:
    """Load a JALA folder with AutoModel / AutoProcessor (trust_remote_code), in eval mode.

    Raises `ModelUnavailable` (with the Markdown notice) for a missing, half-written or foreign folder."""
    problem = checkpoint_problem(path)
    if problem:
        raise ModelUnavailable(no_model_message(path, problem))
    from transformers import AutoModel, AutoProcessor

    started = time.perf_counter()
    try:
        model = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    except Exception as error:  # any failure of a foreign/partial folder becomes the same visible notice
        logger.exception("loading %s failed", path)
        raise ModelUnavailable(
            no_model_message(path, f"Loading `{path}` failed: {type(error).__name__}: {error}")
        ) from error
    if not callable(getattr(model, "generate_motion", None)):
        raise ModelUnavailable(
            no_model_message(
                path,
                f"`{path}` holds a {type(model).__name__}, which cannot generate motion; pass a "
                "JalaForMotionPretraining folder (the pretraining output).",
            )
        )
    logger.info("loaded %s (%s) in %.1f s", path, type(model).__name__, time.perf_counter() - started)
    return LoadedModel(model, processor, path, model_summary(model, path))


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count:,}"


def model_summary(model: Any, path: str) -> list[tuple[str, str]]:
    """(field, value) rows: where the checkpoint is, what it is, how big, how it decodes, how long it trained."""
    config = model.config
    rows: list[tuple[str, str]] = [("checkpoint", f"`{path}`"), ("class", type(model).__name__)]
    rows.append(("variant", str(getattr(config, "variant", "?"))))
    total = sum(p.numel() for p in model.parameters())
    parts = []
    inner = getattr(model, "model", None)
    for name in ("vlm", "ssl_encoder", "lsp", "lap", "motion_embedding"):
        module = getattr(inner, name, None)
        if module is not None:
            parts.append(f"{name} {_millions(sum(p.numel() for p in module.parameters()))}")
    tokenizer = getattr(model, "motion_tokenizer", None)
    if tokenizer is not None:
        parts.append(f"motion tokenizer {_millions(sum(p.numel() for p in tokenizer.parameters()))}")
    rows.append(("parameters", f"{_millions(total)} ({', '.join(parts)})" if parts else _millions(total)))
    vlm = getattr(config, "vlm_config", None)
    if vlm is not None:
        text, vision = vlm.get_text_config(), getattr(vlm, "vision_config", None)
        backbone = (
            f"{getattr(vlm, 'model_type', '?')}: text {text.model_type} {text.hidden_size} x "
            f"{text.num_hidden_layers} layers"
        )
        if vision is not None:
            size = vision.image_size if isinstance(vision.image_size, int) else "x".join(map(str, vision.image_size))
            backbone += f", vision {vision.hidden_size} x {vision.num_hidden_layers} layers @ {size} px"
        name = getattr(config, "backbone_name_or_path", None)
        rows.append(("backbone", backbone + (f" (from `{name}`)" if name else "")))
    ssl = getattr(config, "ssl_encoder_config", None)
    if ssl is not None:
        rows.append(("SSL encoder (frozen)", f"{ssl.model_type} {ssl.hidden_size} x {ssl.num_hidden_layers} layers"))
    tok = getattr(config, "motion_tokenizer_config", None)
    if tok is not None:
        rows.append(
            (
                "motion tokenizer",
                f"GRVQ, codebook {tok.codebook_size}, code dim {tok.code_dim}, "
                f"{getattr(config, 'motion_tokens_per_chunk', '?')} tokens per 15-frame chunk",
            )
        )
    rows.append(
        (
            "alignment",
            f"layer {getattr(config, 'align_layer', '?')}, weight {getattr(config, 'align_weight', '?')}, "
            f"EMA {getattr(config, 'ema_decay', '?')}",
        )
    )
    rows.append(
        (
            "decoding",
            f"strategy '{getattr(config, 'decoding_strategy', 'sample')}' (passes and ensemble apply to 'sample'): "
            f"{getattr(config, 'decoding_steps', '?')} masked-decoding passes per chunk, "
            f"ensemble of {getattr(config, 'decoding_ensemble', '?')}",
        )
    )
    rows.extend(_training_rows(Path(path)))
    return rows


def _training_rows(folder: Path) -> list[tuple[str, str]]:
    rows = []
    log = folder / "training_log.json"
    if log.is_file():
        try:
            entries = [e for e in json.loads(log.read_text()) if isinstance(e, dict) and "step" in e]
        except (json.JSONDecodeError, OSError) as error:
            logger.warning("could not read %s: %s", log, error)
            entries = []
        if entries:
            last = entries[-1]
            loss = next((e["loss"] for e in reversed(entries) if "loss" in e), None)
            rows.append(
                ("training", f"{last['step']} steps" + (f", last logged loss {loss:.3f}" if loss is not None else ""))
            )
    weights = sorted(folder.glob("*.safetensors"))
    if weights:
        saved = datetime.fromtimestamp(weights[0].stat().st_mtime, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        rows.append(("saved", saved))
    return rows


# ------------------------------------------------------------------------------------------------------------
# Examples
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One entry of `examples/index.json` (written by build_examples.py)."""

    name: str
    title: str
    kind: str  # lab | wild | real
    image_path: Path
    instruction: str
    hands: str  # right | left | both (the UI's choice)
    intrinsics: tuple[float, float, float, float] | None = None
    motion_path: Path | None = None
    mean_motion_path: Path | None = None  # (2, T, 21, 3) mean training motion, stored at build time
    hands_present: tuple[bool, bool] | None = None
    num_frames: int | None = None
    credit: str = ""

    @property
    def has_ground_truth(self) -> bool:
        return self.motion_path is not None

    def ground_truth(self) -> np.ndarray | None:
        """(T, 2, 162) MANO-D162 of the clip, or None for real frames."""
        if self.motion_path is None:
            return None
        return np.load(self.motion_path).astype(np.float32)

    def mean_motion(self) -> np.ndarray | None:
        """(2, T, 21, 3) joints of the mean-motion baseline (per-frame mean of the dataset's labelled train clips,
        `trainers/motion_baselines.py`), or None when the examples were built without training clips."""
        if self.mean_motion_path is None:
            return None
        return np.load(self.mean_motion_path).astype(np.float32)

    def suggested_chunks(self, cap: int = 3) -> int:
        """Chunks that cover the ground-truth clip (capped: each chunk costs seconds on a CPU)."""
        if not self.num_frames:
            return 2
        return int(min(cap, max(1, -(-self.num_frames // CHUNK_FRAMES))))


def _example_from_entry(entry: Mapping[str, Any], folder: Path) -> Example:
    kind = entry["kind"]
    if kind not in EXAMPLE_KINDS:
        raise ValueError(f"kind must be one of {EXAMPLE_KINDS}, got {kind!r}")
    image = folder / entry["image"]
    if not image.is_file():
        raise FileNotFoundError(f"image {image} is missing")
    motion = folder / entry["motion"] if entry.get("motion") else None
    if motion is not None and not motion.is_file():
        raise FileNotFoundError(f"motion {motion} is missing")
    mean_motion = folder / entry["mean_motion"] if entry.get("mean_motion") else None
    if mean_motion is not None and not mean_motion.is_file():
        raise FileNotFoundError(f"mean motion {mean_motion} is missing")
    intrinsics = entry.get("intrinsics")
    if intrinsics is not None and len(intrinsics) != 4:
        raise ValueError(f"intrinsics must be (fx, fy, cx, cy), got {intrinsics}")
    present = entry.get("hands_present")
    return Example(
        name=str(entry["name"]),
        title=str(entry.get("title") or entry["name"]),
        kind=kind,
        image_path=image,
        instruction=str(entry["instruction"]),
        hands=str(entry.get("hands", "right")),
        intrinsics=tuple(float(v) for v in intrinsics) if intrinsics is not None else None,  # type: ignore[arg-type]
        motion_path=motion,
        mean_motion_path=mean_motion,
        hands_present=(bool(present[0]), bool(present[1])) if present is not None else None,
        num_frames=int(entry["num_frames"]) if entry.get("num_frames") else None,
        credit=str(entry.get("credit", "")),
    )


def load_examples(folder: str | Path = DEFAULT_EXAMPLES) -> tuple[list[Example], str | None]:
    """The example catalogue and, when something is missing, a Markdown notice for the UI (never an exception:
    the Space must still serve uploads when the examples were not built)."""
    folder = Path(folder)
    index = folder / "index.json"
    if not index.is_file():
        return [], (
            f"**No examples built** (`{index}` is missing). Build them with `{BUILD_EXAMPLES_COMMAND}` "
            "(procedural lab/wild frames from the quickstart dataset, real frames from the shared hand clips). "
            "You can still upload your own image or video."
        )
    try:
        entries = json.loads(index.read_text())["examples"]
    except (json.JSONDecodeError, KeyError, OSError) as error:
        return [], f"**Examples unreadable**: `{index}` ({error}). Rebuild them with `{BUILD_EXAMPLES_COMMAND}`."
    examples, skipped = [], []
    for entry in entries:
        try:
            examples.append(_example_from_entry(entry, folder))
        except (KeyError, ValueError, TypeError, FileNotFoundError) as error:
            skipped.append(f"{entry.get('name', '?')}: {error}")
            logger.warning("skipping example %s: %s", entry.get("name", "?"), error)
    notice = None
    if skipped:
        notice = (
            f"Skipped {len(skipped)} broken example(s) ({'; '.join(skipped)}); "
            f"rebuild with `{BUILD_EXAMPLES_COMMAND}`."
        )
    if not examples and notice is None:
        notice = f"`{index}` lists no examples; rebuild with `{BUILD_EXAMPLES_COMMAND}`."
    return examples, notice


# ------------------------------------------------------------------------------------------------------------
# Generation and metrics
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Prediction:
    """Generated motion for one frame: joints (2, T, 21, 3) and D162 (2, T, 162), camera-frame metres."""

    joints: np.ndarray
    motion: np.ndarray
    hands_present: tuple[bool, bool]
    seconds: float


def generate(
    loaded: LoadedModel,
    image: np.ndarray,
    instruction: str,
    hands: Sequence[str],
    num_chunks: int,
    seed: int = 0,
    decoding_steps: int | None = None,
    ensemble: int | None = None,
) -> Prediction:
    """One `generate_motion` call for one (frame, instruction); seeded so that a visitor can reproduce it."""
    generator = torch.Generator(device=loaded.model.device).manual_seed(int(seed))
    started = time.perf_counter()
    with torch.no_grad():
        output = loaded.model.generate_motion(
            images=[image],
            instructions=[instruction],
            processor=loaded.processor,
            num_chunks=int(num_chunks),
            hands=tuple(hands),
            decoding_steps=decoding_steps,
            ensemble=ensemble,
            generator=generator,
        )
    seconds = time.perf_counter() - started
    present = (HANDS[0] in hands, HANDS[1] in hands)
    logger.info("generated %d chunk(s) for %s in %.2f s", num_chunks, "+".join(hands), seconds)
    return Prediction(
        joints=output.joints[0].float().cpu().numpy(),
        motion=output.motion[0].float().cpu().numpy(),
        hands_present=present,
        seconds=seconds,
    )


METRIC_COLUMNS = ("hand", "frames", "MPJPE (mm)", "PA-MPJPE (mm)", "MWTE (mm)", "MDE (°)")
#: The metrics box: the model's rows, then each baseline's rows on the same hands and frames.
COMPARISON_COLUMNS = ("predictor", *METRIC_COLUMNS)


def ground_truth_metrics(
    pred_joints: np.ndarray,
    predicted: Sequence[bool],
    truth_joints: np.ndarray,
    truth_present: Sequence[bool],
) -> list[list[Any]]:
    """Table-1 metrics of the prediction (2, T, 21, 3) against the clip's ground truth (2, T', 21, 3), per hand
    and over both.

    Compared over the frames both cover (the first min(T_pred, T_true) frames, as `trainers.evaluate_motion`
    does with its valid-frame mask) and only for hands that were both predicted and acting in the clip; rows
    follow `METRIC_COLUMNS`. An empty list means there is nothing to compare (e.g. the other hand was chosen)."""
    from trainers.metrics.hand_motion import hand_motion_metrics

    truth = np.asarray(truth_joints, dtype=np.float32)
    if truth.ndim != 4 or truth.shape[0] != 2 or truth.shape[2:] != (21, 3):
        raise ValueError(f"truth_joints must have shape (2, T, 21, 3), got {truth.shape}.")
    frames = min(pred_joints.shape[1], truth.shape[1])
    hands = [h for h in range(2) if predicted[h] and truth_present[h]]
    rows: list[list[Any]] = []
    if frames == 0 or not hands:
        return rows

    def row(label: str, index: list[int]) -> list[Any]:
        scores = hand_motion_metrics(
            torch.as_tensor(pred_joints[index, :frames]), torch.as_tensor(truth[index, :frames])
        )
        return [
            label,
            frames,
            *(round(scores[key], 1) for key in ("mpjpe_mm", "pa_mpjpe_mm", "mwte_mm", "mde_deg")),
        ]

    rows.extend(row(HANDS[h], [h]) for h in hands)
    if len(hands) == 2:
        rows.append(row("both", hands))
    return rows


def comparison_metrics(
    pred_joints: np.ndarray,
    predicted: Sequence[bool],
    truth_joints: np.ndarray,
    truth_present: Sequence[bool],
    baselines: Mapping[str, np.ndarray] | None = None,
    model_name: str = "JALA",
) -> list[list[Any]]:
    """`ground_truth_metrics` of the model and of each baseline (name -> (2, T_b, 21, 3) joints), rows following
    `COMPARISON_COLUMNS`. A baseline is cut to the model's frame count and scored for the model's hands, so all
    rows cover the same hands and frames; with no model rows (nothing to compare) there are no baseline rows."""
    rows = [[model_name, *row] for row in ground_truth_metrics(pred_joints, predicted, truth_joints, truth_present)]
    if not rows:
        return rows
    for name, joints in (baselines or {}).items():
        cut = np.asarray(joints, dtype=np.float32)[:, : pred_joints.shape[1]]
        if cut.shape[1] < min(pred_joints.shape[1], np.asarray(truth_joints).shape[1]):
            raise ValueError(f"baseline {name!r} has {cut.shape[1]} frames, fewer than the frames compared.")
        rows.extend([name, *row] for row in ground_truth_metrics(cut, predicted, truth_joints, truth_present))
    return rows
