"""UniHand-Mix rows -> JALA model inputs: the dataset's collator contract, then the JalaProcessor.

`dataset_scripts.collator.UniHandCollator` pads rows into arrays (frames, motion, masks); this turns that batch into
the keyword arguments of `JalaForMotionPretraining.forward`: the processor builds the prefix (instruction + first
frame for the VLM); boundary frames become `ssl_pixel_values` for the frozen encoder unless the rows carry
precomputed `ssl_features`; motion goes as token ids when precomputed, else as raw MANO-D162 for the model's frozen
tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dataset_scripts.collator import UniHandCollator
from modeling_jala.processing_jala import JalaProcessor


class JalaPretrainCollator:
    def __init__(self, processor: JalaProcessor, row_collator: UniHandCollator) -> None:
        self.processor = processor
        self.row_collator = row_collator

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.row_collator(rows)
        prefix = self.processor(images=list(batch["first_frames"].numpy()), text=batch["instructions"])
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
            frames = batch["boundary_frames"]  # (B, N + 1, H, W, 3) uint8
            flat = list(frames.flatten(0, 1).numpy())
            pixels = self.processor.ssl_image_processor(images=flat, return_tensors="pt")["pixel_values"]
            inputs["ssl_pixel_values"] = pixels.view(*frames.shape[:2], *pixels.shape[1:])
        if "motion_tokens" in batch:
            inputs["motion_token_ids"] = batch["motion_tokens"].transpose(1, 2).contiguous()  # (B, N, 2, K)
        else:
            inputs["motion"] = batch["motion"]
            inputs["frame_lengths"] = batch["frame_lengths"]
        return inputs
