"""Does a JALA model read its context? Cross-entropy of fully hidden chunks against the code prior.

Motion generation hides a whole chunk and asks the model for its tokens. For the first chunk the only evidence is
the instruction, the first frame and the LSP tokens; later chunks also see the earlier chunks. A model that ignores
the context can still fit later chunks from earlier ones, so its training loss falls while its generations stay at
the prior. This module measures it directly: for every chunk position k, the mean cross-entropy of the true tokens
of chunk k (fully hidden, earlier chunks intact and true) under the model, beside the cross-entropy under the
training split's code frequencies of that hand and chunk position (the best context-free guess). A model-minus-
prior gap near zero at k = 0 means the context is not used (docs/design.md §1.12).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dataset_scripts.collator import UniHandCollator
from trainers.motion_baselines import labelled_rows
from trainers.pretrain_collator import JalaPretrainCollator
from trainers.token_priors import encoded_batches

__all__ = ["chunk_position_log_prior", "hidden_chunk_cross_entropy"]


@torch.no_grad()
def chunk_position_log_prior(
    tokenizer: torch.nn.Module,
    rows: list[dict[str, Any]],
    max_chunks: int = 4,
    smoothing: float = 1.0,
    batch_size: int = 64,
) -> torch.Tensor:
    """(2 hands, max_chunks, K slots, V codes) log frequencies of each slot's codes in the labelled `rows`, per hand
    and chunk position, with `smoothing` added to every count (Laplace)."""
    config = tokenizer.config
    counts = torch.full((2, max_chunks, config.tokens_per_chunk, config.codebook_size), float(smoothing))
    for encoding in encoded_batches(tokenizer, rows, max_chunks, batch_size):
        ids, present = encoding.ids, encoding.chunk_mask  # (B, 2, N, K), (B, 2, N)
        for hand in range(2):
            for chunk in range(ids.shape[2]):
                chosen = ids[present[:, hand, chunk], hand, chunk]  # (M, K)
                counts[hand, chunk].scatter_add_(1, chosen.T, torch.ones(chosen.T.shape))
    return torch.log(counts / counts.sum(-1, keepdim=True))


@torch.no_grad()
def hidden_chunk_cross_entropy(
    model: Any,
    processor: Any,
    repo: str | Path,
    split: str,
    log_prior: torch.Tensor,
    max_clips: int = 24,
    max_chunks: int = 4,
    batch_size: int = 8,
) -> list[dict[str, float]]:
    """Per chunk position: mean cross-entropy (nats) of the true tokens of a fully hidden chunk under `model` and
    under `log_prior` (`chunk_position_log_prior`), over the labelled clips of `split` that have that chunk."""
    size = processor.image_processor.size
    collator = JalaPretrainCollator(
        processor, UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=max_chunks)
    )
    rows = labelled_rows([repo], split, max_clips)
    model_nats: list[list[torch.Tensor]] = [[] for _ in range(max_chunks)]
    prior_nats: list[list[torch.Tensor]] = [[] for _ in range(max_chunks)]
    for start in range(0, len(rows), batch_size):
        batch = {key: value.to(model.device) for key, value in collator(rows[start : start + batch_size]).items()}
        hands = batch["hands_present"].bool()
        ids, chunk_mask = model.tokenize_motion(
            batch["motion"], batch["frame_lengths"], hands, batch["labelled"].bool()
        )
        ssl = batch.get("ssl_features")
        if ssl is None:
            ssl = model.model.ssl_features(batch["ssl_pixel_values"])
        for chunk in range(ids.shape[1]):
            hidden = torch.ones_like(ids, dtype=torch.bool)
            hidden[:, :chunk] = False  # earlier chunks intact and true; later ones cannot be seen (block-causal)
            outputs = model.model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"],
                motion_token_ids=ids,
                placeholder_slots=hidden,
                chunk_mask=chunk_mask,
                hands_present=hands,
                ssl_features=ssl,
            )
            log_probs = torch.log_softmax(model.motion_logits(outputs.motion_hidden_states[:, chunk]).float(), -1)
            targets = ids[:, chunk]  # (B, 2, K)
            valid = (targets >= 0) & outputs.slot_mask[:, chunk, :, None]
            index = targets.clamp_min(0)[..., None]
            model_nats[chunk].append(-log_probs.gather(-1, index)[..., 0][valid].cpu())
            prior = log_prior[:, chunk].to(log_probs.device)[None].expand_as(log_probs)
            prior_nats[chunk].append(-prior.gather(-1, index)[..., 0][valid].cpu())
    results = []
    for chunk in range(max_chunks):
        if not model_nats[chunk]:
            continue
        model_all, prior_all = torch.cat(model_nats[chunk]), torch.cat(prior_nats[chunk])
        if model_all.numel() == 0:
            continue
        results.append(
            {
                "chunk": chunk,
                "model_nats": float(model_all.mean()),
                "prior_nats": float(prior_all.mean()),
                "gain_nats": float(prior_all.mean() - model_all.mean()),
                "tokens": int(model_all.numel()),
            }
        )
    return results
