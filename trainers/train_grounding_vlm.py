"""A small stand-in for a pretrained VLM: the tiny InternVL taught to find the object a phrase names.

    python trainers/train_grounding_vlm.py --dataset outputs/unihand_mix --output_dir outputs/grounding_vlm
    python trainers/pretrain.py --backbone_name_or_path outputs/grounding_vlm --structure tiny ...

Why: JALA starts from a pretrained VLM (InternVL3-2B), which arrives able to name and locate objects. On test_lab
the motion a clip asks for depends on where the *named* object is ("pick up the pink cup"), and no reader of the
scene gets much under 0.75x the mean motion without that object's position (`benchmarks/motion_ceilings.py`). A
from-scratch tiny VLM does not learn that skill from the motion loss, nor from a position-regression loss alone
(`benchmarks/grounding_probe.py`: 5,000 dedicated steps stay above the mean of the frame's objects). Nothing can be
downloaded here, so this trains the skill into the tiny structure's VLM on its own, the way grounding data teaches it
to released VLMs, and saves a standard `InternVLModel` folder (safetensors, word-level tokenizer, image processor)
that `pretrain.py --backbone_name_or_path FOLDER --structure tiny` starts from. A user with a released VLM passes
that instead and skips this step.

Data: referring expressions ("the {colour} {noun}", the instructions' nouns) on first frames of procedural scenes
rendered afresh at `--world_seed`, a seed the dataset builds do not use, half lab and half wild, through the same
renderer, sensor noise and JPEG as dataset rows (`trainers/grounding_data.py`). The scenes' object lists are the
labels, as box annotations are for a released VLM's grounding data; no UniHand-Mix clip, motion or held-out scene is
trained on (the dataset gives only the instruction vocabulary, and its held-out first frames the evaluation).

Objective, in the prompt layout JALA's motion positions read (`[text][<img> ... </img>]`, so image tokens see the
phrase): every image token scores whether the named object's centre lies in its cell of the image-token grid
(cross-entropy over the image tokens: a dense, per-token signal), and the score-weighted image states regress the
object's camera-frame position (smooth L1 on standardised metres). Why dense: a regression loss alone gives each
step one 3-number error to explain and a from-scratch model stays at the mean position (measured: thousands of steps,
both for this VLM and for a purpose-built CNN); telling the model *which token* holds the object makes it learn to
match words to image regions within a few hundred steps. The heads read the image tokens at half the language
model's depth, leaving the layers above for JALA's motion positions to read the answer in. The two heads are training
scaffolding and are not saved.

Measured (README, "A grounding stand-in VLM"): the skill is learned, but tiny JALA pretraining from this VLM does not
yet move test_lab motion, so the quickstart starts from scratch; the folder is for that comparison and for runs
longer than the quickstart's.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import AutoModel, HfArgumentParser, PreTrainedModel

from dataset_scripts.collator import load_frame
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizerConfig
from modeling_jala.processing_jala import JalaProcessor
from trainers.evaluate_motion import _image_size
from trainers.grounding_data import (
    GROUNDING_WORLD_SEED,
    HELD_OUT_SPLITS,
    GroundingQuery,
    baseline_errors,
    grid_cell,
    held_out_scenes,
    phrase,
    render_scenes,
    summary_mm,
)
from trainers.hub_folder import hub_repo_ids, portable_values
from trainers.model_card import front_matter
from trainers.plotting import plot_training_curves
from trainers.presets import build_processor, build_word_tokenizer, image_seq_length, jala_structure

logger = logging.getLogger("jala.train_grounding_vlm")


@dataclass
class GroundingVlmArguments:
    dataset: list[str] = field(
        default_factory=list, metadata={"help": "UniHand-Mix folder(s): instruction vocabulary and held-out frames."}
    )
    output_dir: Path = field(default=Path("outputs/grounding_vlm"))
    structure: str = field(default="tiny", metadata={"help": "The JALA structure whose VLM is trained."})
    scenes: int = field(
        default=3000, metadata={"help": "Procedural scenes rendered for training (half lab, half wild)."}
    )
    world_seed: int = field(default=GROUNDING_WORLD_SEED, metadata={"help": "Procedural-world seed of the scenes."})
    max_steps: int = field(default=3000)
    batch_size: int = field(default=32, metadata={"help": "Queries per step (one object of each drawn scene)."})
    learning_rate: float = field(default=1e-3)
    warmup_steps: int = field(default=100)
    weight_decay: float = field(default=0.01)
    position_weight: float = field(default=1.0, metadata={"help": "Weight of the position regression."})
    readout_layer: int | None = field(
        default=None,
        metadata={
            "help": "Language-model layer whose image-token states the heads read (default: half the layers), so "
            "the layers above it are left for JALA's motion positions to read the answer from."
        },
    )
    eval_every: int = field(default=500)
    eval_clips: int = field(default=40, metadata={"help": "Held-out clips per split scored (first frames)."})
    seed: int = field(default=0)
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's)."})

    def __post_init__(self) -> None:
        if not self.dataset:
            raise ValueError("--dataset is required: the UniHand-Mix folder whose instructions give the vocabulary.")
        if self.max_steps < 1 or self.scenes < 2:
            raise ValueError(f"need --max_steps >= 1 and --scenes >= 2, got {self.max_steps} and {self.scenes}.")
        self.output_dir = Path(self.output_dir)


class GroundingHeads(nn.Module):
    """Scaffolding on the VLM's image-token states: a per-token score (is the object in my cell?) and a position
    read from the score-weighted states, once per answer slot (one for a phrase, one per hand for an instruction's
    targets)."""

    def __init__(self, hidden_size: int, slots: int = 1) -> None:
        super().__init__()
        self.score = nn.Linear(hidden_size, slots)
        self.position = nn.Linear(hidden_size, 3)

    def forward(self, image_states: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, H) states -> scores (B, slots, N) and positions (B, slots, 3)."""
        scores = self.score(image_states).transpose(1, 2)
        pooled = scores.softmax(-1) @ image_states
        return scores, self.position(pooled)


def image_token_states(states: Tensor, input_ids: Tensor, image_token_id: int) -> Tensor:
    """(B, N, H) final states at the image-context tokens, in the order the VLM placed its image features."""
    is_image_token = input_ids == image_token_id
    counts = is_image_token.sum(1)
    if not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
        raise ValueError(f"every prompt needs the same, non-zero number of image tokens; got {counts.tolist()}.")
    return states[is_image_token].view(states.shape[0], int(counts[0]), states.shape[-1])


class FrameBatcher:
    """Frames decoded once into the VLM's pixel values; prompts laid out by the JALA processor."""

    def __init__(self, processor: JalaProcessor) -> None:
        self.processor = processor
        self.image_size = _image_size(processor)  # the size the pretraining collator decodes first frames to
        self._pixels: dict[int, Tensor] = {}

    def pixels(self, frame: Any) -> Tensor:
        # Keyed by object identity: every frame lives in the scene lists for the whole run.
        key = id(frame)
        if key not in self._pixels:
            image = load_frame(frame, self.image_size)[0]
            self._pixels[key] = self.processor.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
        return self._pixels[key]

    def __call__(self, queries: list[GroundingQuery], texts: list[str]) -> dict[str, Tensor]:
        prompt = self.processor.encode_prompts(texts)
        return {
            "input_ids": prompt["input_ids"],
            "attention_mask": prompt["attention_mask"],
            "pixel_values": torch.stack([self.pixels(query.frame) for query in queries]),
        }


class GroundingTrainer:
    """The VLM, its scaffolding heads and the position standardisation, with one loss and one evaluation."""

    def __init__(
        self,
        vlm: PreTrainedModel,
        processor: JalaProcessor,
        position_mean: Any,
        position_std: Any,
        readout_layer: int | None = None,
        slots: int = 1,
    ):
        self.vlm = vlm
        text_config = vlm.config.text_config
        self.readout_layer = text_config.num_hidden_layers // 2 if readout_layer is None else readout_layer
        if not 1 <= self.readout_layer <= text_config.num_hidden_layers:
            raise ValueError(
                f"--readout_layer must be in 1..{text_config.num_hidden_layers}, got {self.readout_layer}."
            )
        self.heads = GroundingHeads(text_config.hidden_size, slots)
        self.batcher = FrameBatcher(processor)
        self.image_token_id = vlm.config.image_token_id
        self.grid = math.isqrt(processor.image_seq_length)
        if self.grid**2 != processor.image_seq_length:
            raise ValueError(f"image_seq_length {processor.image_seq_length} is not a square grid of tokens.")
        self.mean = np.asarray(position_mean, np.float64)
        self.std = np.asarray(position_std, np.float64)

    def parameters(self) -> list[nn.Parameter]:
        return [*self.vlm.parameters(), *self.heads.parameters()]

    def forward(self, queries: list[GroundingQuery], texts: list[str]) -> tuple[Tensor, Tensor]:
        """Each query's image-token scores (B, N) and position (B, 3), in its own answer slot."""
        device = next(self.vlm.parameters()).device
        inputs = {name: tensor.to(device) for name, tensor in self.batcher(queries, texts).items()}
        states = self.vlm(**inputs, output_hidden_states=True).hidden_states[self.readout_layer]
        scores, positions = self.heads(image_token_states(states, inputs["input_ids"], self.image_token_id))
        rows = torch.arange(len(queries), device=device)
        slots = torch.tensor([query.hand if scores.shape[1] > 1 else 0 for query in queries], device=device)
        return scores[rows, slots], positions[rows, slots]

    def loss(self, queries: list[GroundingQuery], texts: list[str], position_weight: float) -> dict[str, Tensor]:
        scores, positions = self.forward(queries, texts)
        cells = torch.tensor([grid_cell(query.image_xy, self.grid) for query in queries], device=scores.device)
        target = torch.tensor(
            (np.stack([q.position for q in queries]) - self.mean) / self.std, dtype=torch.float32, device=scores.device
        )
        cell_loss = F.cross_entropy(scores, cells)
        position_loss = F.smooth_l1_loss(positions, target)
        return {
            "loss": cell_loss + position_weight * position_loss,
            "cell_loss": cell_loss,
            "position_loss": position_loss,
        }

    @torch.no_grad()
    def evaluate(self, scenes: list[list[GroundingQuery]], batch_size: int = 64) -> dict[str, float]:
        """3D error of the named object (mm ± SE) and the share of queries whose cell scores highest."""
        self.vlm.eval()
        queries = [query for scene in scenes for query in scene]
        errors, hits = [], []
        for start in range(0, len(queries), batch_size):
            part = queries[start : start + batch_size]
            scores, positions = self.forward(part, [query_text(q) for q in part])
            predicted = positions.double().cpu().numpy() * self.std + self.mean
            errors += list(np.linalg.norm(predicted - np.stack([q.position for q in part]), axis=1))
            hits += [int(s) == grid_cell(q.image_xy, self.grid) for s, q in zip(scores.argmax(-1), part, strict=True)]
        self.vlm.train()
        return {**summary_mm(np.asarray(errors)), "cell_accuracy": float(np.mean(hits))}


def query_text(query: GroundingQuery, rng: np.random.Generator | None = None) -> str:
    """The prompt of a query: its instruction, or a phrase naming its object (a random synonym with `rng`)."""
    return query.text if query.text is not None else phrase(query.colour, query.kind, rng)


class QuerySampler:
    """Batches of queries: one random query of each of `batch_size` random scenes, prompted by its instruction or
    (a referring query) by a phrase with a random synonym."""

    def __init__(self, scenes: list[list[GroundingQuery]], batch_size: int, seed: int) -> None:
        self.scenes = scenes
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> tuple[list[GroundingQuery], list[str]]:
        drawn = [self.scenes[i] for i in self.rng.integers(len(self.scenes), size=self.batch_size)]
        queries = [scene[self.rng.integers(len(scene))] for scene in drawn]
        return queries, [query_text(query, self.rng) for query in queries]


def position_statistics(scenes: list[list[GroundingQuery]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the training objects' positions (the regression target's standardisation)."""
    positions = np.stack([query.position for scene in scenes for query in scene]).astype(np.float64)
    return positions.mean(0), positions.std(0)


def build_vlm_and_processor(args: GroundingVlmArguments) -> tuple[PreTrainedModel, JalaProcessor]:
    """The structure's VLM at random init around a word-level tokenizer of the dataset's instructions (the same one
    `pretrain.py` builds from scratch), and the processor that lays out its prompts."""
    from trainers.pretrain import instructions_of

    tokenizer = build_word_tokenizer(instructions_of(args.dataset))
    config = jala_structure(
        args.structure,
        vocab_size=len(tokenizer),
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        tokenizer_config=JalaMotionTokenizerConfig(),
    )
    vlm = AutoModel.from_config(config.vlm_config)
    processor = build_processor(
        tokenizer,
        image_size=config.vlm_config.vision_config.image_size[0],
        ssl_image_size=config.ssl_encoder_config.image_size,
        image_seq_length=image_seq_length(config),
    )
    return vlm, processor


def train(args: GroundingVlmArguments) -> dict[str, Any]:
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    vlm, processor = build_vlm_and_processor(args)
    scenes = render_scenes(args.scenes, args.world_seed)
    tests = {split: held_out_scenes(args.dataset[0], split, args.eval_clips) for split in HELD_OUT_SPLITS}
    tests = {split: held_out for split, held_out in tests.items() if held_out}
    mean, std = position_statistics(scenes)
    sample = QuerySampler(scenes, args.batch_size, args.seed)
    baselines = {
        split: {name: summary_mm(errors) for name, errors in baseline_errors(held_out, mean).items()}
        for split, held_out in tests.items()
    }
    trainer = GroundingTrainer(vlm, processor, mean, std, args.readout_layer)
    optimizer = torch.optim.AdamW(trainer.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)

    def lr_at(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, args.warmup_steps))
        return args.learning_rate * warm * 0.5 * (1 + math.cos(math.pi * step / args.max_steps))

    history: list[dict[str, float]] = []
    evaluations: list[dict[str, Any]] = []
    started = time.monotonic()
    bar = tqdm(range(1, args.max_steps + 1), desc="training grounding VLM", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step - 1)
        losses = trainer.loss(*sample(), args.position_weight)
        optimizer.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainer.parameters(), 1.0)
        optimizer.step()
        record = {"step": step, **{name: value.item() for name, value in losses.items()}}
        history.append(record)
        bar.set_postfix(cell_loss=f"{record['cell_loss']:.3f}", position_loss=f"{record['position_loss']:.3f}")
        if tests and (step % args.eval_every == 0 or step == args.max_steps):
            evaluations.append({"step": step, **{s: trainer.evaluate(held_out) for s, held_out in tests.items()}})
            logger.info("step %d: %s", step, json.dumps(evaluations[-1]))
    report = {
        "steps": args.max_steps,
        "train_seconds": time.monotonic() - started,
        "scenes": len(scenes),
        "readout_layer": trainer.readout_layer,
        "queries": sum(len(scene) for scene in scenes),
        "baselines": baselines,
        "evaluations": evaluations,
        "history": history,
    }
    save_grounding_vlm(vlm, processor, args, report)
    return report


def format_grounding_table(report: dict[str, Any]) -> str:
    """The last held-out evaluation beside the two baselines that read no words, as a Markdown table."""
    final = report["evaluations"][-1] if report["evaluations"] else {}
    lines = [
        f"Held-out first frames after {report['steps']} steps: 3D error of the named object in mm ± SE; cell "
        "accuracy = the image token holding its centre scores highest.",
        "",
        "| split | this VLM | cell accuracy | mean of the frame's objects | global mean |",
        "|---|---|---|---|---|",
    ]
    for split in (split for split in HELD_OUT_SPLITS if split in final):
        model, baseline = final[split], report["baselines"][split]
        lines.append(
            f"| {split} | {model['mm']:.1f} ± {model['se_mm']:.1f} | {model['cell_accuracy']:.2f} "
            f"| {baseline['scene mean']['mm']:.1f} | {baseline['global mean']['mm']:.1f} |"
        )
    return "\n".join(lines)


def save_grounding_vlm(vlm: PreTrainedModel, processor: JalaProcessor, args: GroundingVlmArguments, report: dict):
    """A standard VLM folder (config + safetensors, tokenizer, image processor) as a released VLM ships, plus the
    record, the curve and a card."""
    output = args.output_dir
    output.mkdir(parents=True, exist_ok=True)
    vlm.eval().save_pretrained(output)
    processor.tokenizer.save_pretrained(output)
    processor.image_processor.save_pretrained(output)
    (output / "training_args.json").write_text(json.dumps(portable_values(asdict(args)), indent=2, default=str))
    summary = {key: value for key, value in report.items() if key != "history"}
    (output / "grounding_results.json").write_text(json.dumps(summary, indent=2))
    plot_training_curves(report["history"], ["cell_loss", "position_loss"], output / "training_curve.png")
    metadata = front_matter(["internvl", "grounding", "hand-motion"], datasets=hub_repo_ids(args.dataset))
    (output / "README.md").write_text(
        metadata
        + f"""
# Grounding stand-in VLM for JALA (tiny InternVL structure)

A from-scratch `InternVLModel` trained {report["steps"]} steps ({report["train_seconds"] / 60:.1f} min) to locate
the object a phrase names ("the pink cup") in {report["scenes"]} rendered procedural scenes, in place of the released
VLM JALA starts from when none can be downloaded. Trained by `trainers/train_grounding_vlm.py`; settings in
`training_args.json`, record in `grounding_results.json`, curve in `training_curve.png`.

"""
        + format_grounding_table(report)
        + """

```bash
python trainers/pretrain.py --backbone_name_or_path path/to/this/folder --structure tiny ...
```
"""
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments (see `--help`), train, save; returns the report."""
    parser = HfArgumentParser(GroundingVlmArguments, description=__doc__.splitlines()[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    return train(args)


if __name__ == "__main__":
    main()
