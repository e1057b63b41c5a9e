"""Which parts of a JALA model does each pretraining loss reach, and how strongly?

The alignment loss acts on h at `align_layer`; it can only shape the layers below it, the vision tower, the LSP and
the LAP queries, and only in proportion to its gradient next to the masked-chunk loss's. This measures, on a few
training batches, the gradient L2 norm of L_MCP and of λ·L_align (the weighted term the optimizer sees) per
parameter group: vision tower, projector, text embeddings, each decoder layer, motion-token embeddings and heads,
LSP, LAP queries. A ratio λ·L_align / L_MCP near 0 in a group means alignment barely moves it.

    from trainers.loss_gradients import loss_gradient_norms
    report = loss_gradient_norms(model, processor, ["outputs/unihand_mix"], batches=4)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dataset_scripts.collator import UniHandCollator
from dataset_scripts.streaming import UniHandStream
from trainers.pretrain_collator import JalaPretrainCollator

#: (group name, parameter-name pattern); the first match wins, unmatched trainable tensors go to "other".
GROUPS: tuple[tuple[str, str], ...] = (
    ("vision tower", r"^model\.vlm\.vision_tower\."),
    ("projector", r"^model\.vlm\.multi_modal_projector\."),
    ("text embeddings", r"^model\.vlm\.language_model\.embed_tokens\."),
    ("decoder layer {}", r"^model\.vlm\.language_model\.layers\.(\d+)\."),
    ("motion embeddings", r"^model\.motion_embedding\."),
    ("motion heads", r"^motion_heads\."),
    ("LSP", r"^model\.lsp\."),
    ("LAP queries", r"^model\.lap\.queries$"),
)


def group_of(name: str) -> str:
    for label, pattern in GROUPS:
        match = re.match(pattern, name)
        if match:
            return label.format(*match.groups())
    return "other"


def _gradients(model: torch.nn.Module, inputs: dict[str, Any], align_weight: float, seed: int) -> dict[str, Tensor]:
    """Gradients of the training loss at a given λ; the seed fixes the sampled masks, so two calls differ only in λ."""
    config = model.config
    kept = config.align_weight
    config.align_weight = align_weight
    try:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(seed)
        model(**inputs).loss.backward()
    finally:
        config.align_weight = kept
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}


def _group_norms(gradients: dict[str, Tensor]) -> dict[str, float]:
    squares: dict[str, float] = {}
    for name, gradient in gradients.items():
        squares[group_of(name)] = squares.get(group_of(name), 0.0) + float(gradient.float().pow(2).sum())
    return {group: value**0.5 for group, value in squares.items()}


def loss_gradient_norms(
    model: Any,
    processor: Any,
    repos: Sequence[str | Path],
    batches: int = 4,
    batch_size: int = 8,
    max_chunks: int = 4,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """{group: {mcp, align, ratio}}: mean over `batches` training batches of each group's gradient norm under L_MCP
    and under λ·L_align, and their ratio. The model's weights are not changed (gradients are cleared)."""
    size = processor.image_processor.size
    collator = JalaPretrainCollator(
        processor, UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=max_chunks, seed=seed)
    )
    stream = iter(UniHandStream(list(map(str, repos)), split="train", seed=seed, rank=0, world_size=1))
    was_training = model.training
    model.train()
    weight = model.config.align_weight
    sums: dict[str, dict[str, float]] = {}
    for index in range(batches):
        inputs = collator([next(stream) for _ in range(batch_size)])
        mcp = _gradients(model, inputs, 0.0, seed + index)
        terms = {"mcp": mcp}
        if weight > 0:
            full = _gradients(model, inputs, weight, seed + index)
            # L is linear in λ, so λ·∇L_align = ∇L(λ) − ∇L(0) on the same masks.
            terms["align"] = {name: full[name] - mcp.get(name, 0.0) for name in full}
        for term, gradients in terms.items():
            for group, norm in _group_norms(gradients).items():
                sums.setdefault(group, {}).setdefault(term, 0.0)
                sums[group][term] += norm / batches
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    for values in sums.values():
        if "align" in values and values.get("mcp"):
            values["ratio"] = values["align"] / values["mcp"]
    return sums
