"""UniHand-Mix rows -> JALA model inputs: the dataset's collator contract, then the JalaProcessor.

`dataset_scripts.collator.UniHandCollator` pads rows into arrays (frames, motion, masks); this turns that batch into
the keyword arguments of `JalaForMotionPretraining.forward`: the processor builds the prefix (instruction + first
frame for the VLM); boundary frames become `ssl_pixel_values` for the frozen encoder unless the rows carry
precomputed `ssl_features`; motion goes as token ids when precomputed, else as raw MANO-D162 for the model's frozen
tokenizer.

Motion description (docs/design.md §1.13): `DescriptionMixture` draws a configurable share of the training samples
from the labelled `motion_description` clips and flags them (`DESCRIBE_KEY`); for those rows the collator puts the
fixed `DESCRIPTION_PROMPT` in the instruction slot and the clip's instruction text (the builder writes the
description there) after the motion as the language-model target.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from dataset_scripts.collator import DESCRIBE_KEY, UniHandCollator
from dataset_scripts.streaming import UniHandStream
from modeling_jala.layout_jala import CLIP_TOKEN_AXES, SEQUENCE_TOKEN_AXES, reorder_axes
from modeling_jala.processing_jala import DESCRIPTION_PROMPT, JalaProcessor

#: The task type whose rows hold a description of their own motion in `instruction` (dataset_scripts/schema.py).
DESCRIPTION_TASK = "motion_description"


def is_description_row(row: Mapping[str, Any]) -> bool:
    """A clip that can train L_desc: a labelled motion (the context) and a description (the target)."""
    return row.get("task_type") == DESCRIPTION_TASK and bool(row.get("labelled"))


class DescriptionMixture(IterableDataset):
    """The pretraining stream with a share of motion-description samples mixed in.

    Each sample is, with probability `description_share`, the next labelled `motion_description` clip of
    `descriptions` (flagged with DESCRIBE_KEY), else the next row of `samples` (unchanged, so L_MCP / L_align see the
    same rows as without the mixture, description clips included). The draw is seeded by (seed, rank, worker), so a
    run repeats exactly. Why a second stream rather than relabelling rows: the share is then a free parameter, not
    capped by how many description clips the corpus happens to hold (20 % of labelled synthetic clips).
    """

    def __init__(
        self, samples: UniHandStream, descriptions: UniHandStream, description_share: float, seed: int = 0
    ) -> None:
        super().__init__()
        if not 0.0 <= description_share <= 1.0:
            raise ValueError(f"description_share must be in [0, 1], got {description_share}.")
        self.samples, self.descriptions = samples, descriptions
        self.description_share, self.seed = description_share, seed
        # The Trainer's rank-aware loader reads these: both streams split themselves per rank.
        self.rank, self.world_size = samples.rank, samples.world_size

    @classmethod
    def from_repos(
        cls, repos: Sequence[str], samples: UniHandStream, description_share: float, seed: int = 0, **stream_kwargs
    ) -> DescriptionMixture:
        """The mixture over `samples` and a shuffled, endless stream of the repos' training rows, filtered to
        description clips (checked to exist, or the filter would never yield)."""
        count = sum(
            is_description_row(row)
            for row in UniHandStream(
                repos, split="train", infinite=False, shuffle=False, columns=["task_type", "labelled"], **stream_kwargs
            )
        )
        if count == 0 and description_share > 0:
            raise ValueError(
                f"--description_share={description_share} but {list(repos)} hold no labelled {DESCRIPTION_TASK!r} "
                "training clips; build the data with a task mix that has them, or set the share to 0."
            )
        descriptions = UniHandStream(repos, split="train", seed=seed + 1, **stream_kwargs)
        return cls(samples, descriptions, description_share, seed)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = 0 if info is None else info.id
        draws = np.random.default_rng([self.seed, self.rank, worker])
        samples = iter(self.samples)
        descriptions = (row for row in self.descriptions if is_description_row(row))
        while True:
            if self.description_share > 0 and draws.random() < self.description_share:
                yield {**next(descriptions), DESCRIBE_KEY: True}
            else:
                try:
                    yield next(samples)
                except StopIteration:
                    return


class LabelledRows(IterableDataset):
    """The rows of a stream that carry a motion label (`labelled`: exact or confident pseudo-label), for variants
    that train on labelled clips only; the stream's own domain mixture then holds among the labelled rows."""

    def __init__(self, rows: UniHandStream) -> None:
        super().__init__()
        self.rows = rows
        self.rank, self.world_size = rows.rank, rows.world_size  # read by the Trainer's rank-aware loader

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (row for row in self.rows if row["labelled"])


def ssl_pixel_values(processor: JalaProcessor, boundary_frames: torch.Tensor) -> torch.Tensor:
    """(B, N + 1, H, W, 3) uint8 boundary frames -> (B, N + 1, 3, h, w) pixel values for the frozen SSL encoder."""
    flat = list(boundary_frames.flatten(0, 1).numpy())
    pixels = processor.ssl_image_processor(images=flat, return_tensors="pt")["pixel_values"]
    return pixels.view(*boundary_frames.shape[:2], *pixels.shape[1:])


class JalaPretrainCollator:
    def __init__(self, processor: JalaProcessor, row_collator: UniHandCollator) -> None:
        self.processor = processor
        self.row_collator = row_collator

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.row_collator(rows)
        describe = batch["describe"]
        # A description sample's instruction is its target, so the prefix holds the fixed request instead.
        prompts = [
            DESCRIPTION_PROMPT if flag else text
            for flag, text in zip(describe.tolist(), batch["instructions"], strict=True)
        ]
        prefix = self.processor(images=list(batch["first_frames"].numpy()), text=prompts)
        inputs: dict[str, torch.Tensor] = {
            "input_ids": prefix["input_ids"],
            "attention_mask": prefix["attention_mask"],
            "pixel_values": prefix["pixel_values"],
            "chunk_mask": batch["chunk_mask"],
            "hands_present": batch["hands_present"],
            "labelled": batch["labelled"],
        }
        if "ssl_features" in batch:
            inputs["ssl_features"] = batch["ssl_features"].float()
        else:
            inputs["ssl_pixel_values"] = ssl_pixel_values(self.processor, batch["boundary_frames"])
        if "motion_tokens" in batch:
            tokens = reorder_axes(batch["motion_tokens"], CLIP_TOKEN_AXES, SEQUENCE_TOKEN_AXES)
            inputs["motion_token_ids"] = tokens.contiguous()  # (B, N, 2, K)
        else:
            inputs["motion"] = batch["motion"]
            inputs["frame_lengths"] = batch["frame_lengths"]
        if bool(describe.any()):
            # Only batches with a description sample carry text after the motion: without one, the inputs (and the
            # loss) are exactly those of the two-loss recipe.
            texts = [text if flag else "" for flag, text in zip(describe.tolist(), batch["instructions"], strict=True)]
            inputs.update(self.processor.description_targets(texts))
            inputs["describe"] = describe
        return inputs
