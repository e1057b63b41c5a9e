"""Model cards (README.md with Hub YAML metadata) for the folders the trainers write.

Every card's metadata follows `huggingface_hub.ModelCardData`: `library_name`, `license`, `pipeline_tag`, `tags`,
and where known `base_model` (the Hub model training started from) and `datasets` (Hub ids of the training data).
Local folders never appear there, and recorded arguments reach a card with local paths reduced to folder names
(`trainers.hub_folder`, docs/design.md §6).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import ModelCardData
from transformers import PreTrainedModel

from modeling_jala.configuration_jala import JalaMotionTokenizerConfig

PAPER = "https://arxiv.org/abs/2602.21736"
LICENSE = "apache-2.0"


def front_matter(
    tags: list[str],
    pipeline_tag: str | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
) -> str:
    """The card's Hub YAML metadata block; `base_model` and `datasets` must be Hub ids (left out when unknown)."""
    metadata = ModelCardData(
        library_name="transformers",
        license=LICENSE,
        pipeline_tag=pipeline_tag,
        tags=["jala", *tags],
        base_model=base_model or None,
        datasets=list(datasets) or None,
    )
    return f"---\n{metadata.to_yaml()}\n---\n"


def _starting_point(name: str, base_model: str | None) -> str:
    """How a card names where training started: a Hub link, or a local folder's name."""
    if base_model and name == base_model:
        return f"[`{name}`](https://huggingface.co/{name})"
    return f"`{name}` (a local folder)" if name != "from_scratch" else "random weights (`--from_scratch`)"


def _metric_rows(report: dict) -> str:
    labels = {
        "mpjpe_mm": "MPJPE (mm)",
        "pa_mpjpe_mm": "PA-MPJPE (mm)",
        "mwte_mm": "MWTE (mm)",
        "mde_deg": "MDE (deg)",
        "wrist_perplexity": "wrist codebook perplexity",
        "finger_perplexity": "finger codebook perplexity",
        "wrist_usage": "wrist codes used",
        "finger_usage": "finger codes used",
    }
    return "\n".join(f"| {label} | {report[key]:.3f} |" for key, label in labels.items() if key in report)


def write_tokenizer_card(
    output_dir: Path, config: JalaMotionTokenizerConfig, report: dict, args: dict, datasets: Sequence[str] = ()
) -> Path:
    """README.md describing the tokenizer, how to load it, and what it measured on held-out clips; `args` as
    recorded (no local paths), `datasets` Hub ids."""
    card = (
        front_matter(["hand-motion", "motion-tokenizer", "vector-quantization", "mano"], datasets=datasets)
        + f"""
# JALA motion tokenizer (part-level GRVQ)

Tokenizes MANO-D162 hand motion for [JALA]({PAPER}): each 15-frame chunk of one hand becomes
{config.tokens_per_part} wrist + {config.tokens_per_part} finger tokens ({config.latent_steps} latent steps x
{config.num_groups} groups x {config.num_residual_layers} residual layers, codebook {config.codebook_size},
code dim {config.code_dim}).

## Usage

```python
import torch
from transformers import AutoModel

tokenizer = AutoModel.from_pretrained("path/to/this/folder", trust_remote_code=True)
motion = torch.randn(1, 2, 45, 162)      # (batch, hands [left, right], frames, MANO-D162)
encoding = tokenizer.encode(motion)      # ids (1, 2, 3, {config.tokens_per_chunk}), chunk_mask (1, 2, 3)
decoded = tokenizer.decode(encoding.ids, encoding.chunk_mask)  # (1, 2, 45, 162)
```

## Held-out reconstruction

Encode -> decode of whole held-out clips; joint errors on the 21-joint block of D162, millimetres.

| metric | value |
|---|---|
{_metric_rows(report)}

For context, Being-H0 reports 5.73 mm MPJPE / 1.29 mm PA-MPJPE for its part-level D162 tokenizer on real
lab data; the numbers above come from the data named below and are not directly comparable.

## Training

```json
{json.dumps(args, indent=1)}
```

`training_log.jsonl` holds the logged curve, `training_curve.png` plots it.
"""
    )
    path = Path(output_dir) / "README.md"
    path.write_text(card)
    return path


def write_jala_card(
    output_dir: Path,
    config,
    history: list[dict],
    training_args: dict,
    results: dict | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] = (),
) -> Path:
    """README.md of a pretrained JALA folder: what it is, how to load and use it, how it was trained.
    `training_args` as recorded (no local paths); `base_model` and `datasets` Hub ids for the metadata."""
    text = config.vlm_config.get_text_config()
    last = history[-1] if history else {}
    curve = "\n".join(
        f"| {entry['step']} | {entry['loss']:.4f} | {entry.get('mcp_loss', float('nan')):.4f} | "
        f"{entry.get('align_loss', float('nan')):.4f} |"
        for entry in history
    )
    evaluation = ""
    if results:
        from trainers.evaluate_motion import TABLE_LEGEND, format_table

        evaluation = (
            "\n## Generation on held-out clips\n\nThe model beside two baselines fitted on the training clips, scored "
            "on the same clips, hands and frames: the per-frame mean training motion, and the motion of the training "
            "clip whose instruction and first frame are nearest (`trainers/motion_baselines.py`). "
            f"{TABLE_LEGEND[0].upper()}{TABLE_LEGEND[1:]}.\n\n"
            + "\n".join(format_table(results).splitlines()[1:])  # the first line is the legend above
            + "\n"
        )
    card = (
        front_matter(["vision-language-action", "hand-motion", "latent-actions"], "robotics", base_model, datasets)
        + f"""
# JALA ({config.variant}) — Joint-Aligned Latent Action pretraining

A [JALA]({PAPER}) model: a VLM ({config.vlm_config.model_type}, {text.num_hidden_layers} decoder layers, width
{text.hidden_size}) that predicts MANO-D162 hand-motion chunks from an instruction and a first frame, pretrained
with masked chunk prediction and alignment of its layer-{config.align_layer} predictive embeddings to latent actions
from a frozen {config.ssl_encoder_config.model_type} encoder (λ = {config.align_weight}, EMA α = {config.ema_decay}).

## Usage

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("path/to/this/folder", trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained("path/to/this/folder", trust_remote_code=True)
out = model.generate_motion(images=[first_frame], instructions=["pick up the red cup"], processor=processor,
                            num_chunks=4, hands=("right",))
out.motion   # (1, 2, 60, 162) MANO-D162 for (left, right); out.joints: (1, 2, 60, 21, 3) metres
```

The motion tokenizer lives in `motion_tokenizer/` and loads on its own with `AutoModel` as well.
{evaluation}
## Training

Last logged step: {json.dumps(last)}

| step | loss | L_MCP | L_align |
|---|---|---|---|
{curve}

```json
{json.dumps(training_args, indent=1, default=str)}
```
"""
    )
    path = Path(output_dir) / "README.md"
    path.write_text(card)
    return path


def write_policy_card(
    output_dir: Path,
    model: PreTrainedModel,
    summary: dict,
    tasks: list[str],
    base_model: str | None = None,
    datasets: Sequence[str] = (),
) -> Path:
    """README.md of a post-trained policy folder: what it is, how to call it, what it was trained on. `summary` as
    recorded (no local paths); `base_model` and `datasets` Hub ids for the metadata."""
    head = model.config.action_head_config
    text = model.config.vlm_config.get_text_config()
    task_list = "\n".join(f"- {task}" for task in tasks)
    start = _starting_point(summary["start"], base_model)
    cameras = ", ".join(f"`{key}`" for key in head.image_keys)
    vision = "fine-tuned" if model.vision_tower_is_trainable else "frozen"
    if len(head.image_keys) == 1:
        call = 'policy.predict_action(image, "open the drawer", state)'
    else:
        images = ", ".join(f'"{key}": image_{index}' for index, key in enumerate(head.image_keys))
        call = f'policy.predict_action({{{images}}}, "open the drawer", state)'
    steps = head.n_action_steps or head.chunk_size
    card = (
        front_matter(["vision-language-action", "flow-matching", "lerobot"], "robotics", base_model, datasets)
        + f"""
# JALA policy — flow-matching action head on JALA predictive embeddings

A JALA ({PAPER}) VLA: the VLM ({model.config.vlm_config.model_type}, decoder kept up to its align layer
{model.config.align_layer}, width {text.hidden_size}; vision tower {vision}) reads the camera images ({cameras}) and
the instruction, its predictive
embeddings at placeholder motion slots condition a DiT ({head.num_layers} layers, {head.num_heads} heads, width
{head.hidden_size}) that samples {head.chunk_size}-step chunks of {head.action_dim}-d actions from the
{head.state_dim}-d robot state in {head.num_inference_steps} Euler steps of diffusers'
`FlowMatchEulerDiscreteScheduler`. State/action normalisation statistics are part of the weights.

## Usage

```python
from transformers import AutoModel

policy = AutoModel.from_pretrained("path/to/this/folder", trust_remote_code=True).eval()
actions = {call}  # (1, {head.chunk_size}, {head.action_dim}) raw
# closed loop: reset() per episode, then one action per control step ({steps} executed per predicted chunk)
policy.reset()
action = {call.replace("predict_action", "select_action")}
```

## Training

Post-trained from {start} on `{summary["dataset"]}` ({summary["episodes"]} episodes,
{summary["frames"]} frames): {summary["steps"]} steps at global batch {summary["global_batch_size"]},
{summary["wall_time_s"]:.0f} s. Instructions:

{task_list}
"""
    )
    path = Path(output_dir) / "README.md"
    path.write_text(card)
    return path
