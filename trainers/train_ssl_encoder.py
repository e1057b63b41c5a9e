"""Self-supervised pretraining of JALA's frozen frame encoder on UniHand-Mix frames (labels are never read).

    python trainers/train_ssl_encoder.py --dataset outputs/unihand_mix --output_dir outputs/ssl_encoder --max_minutes 5
    python trainers/pretrain.py --ssl_encoder_name_or_path outputs/ssl_encoder --structure tiny ...

Why: the LAP and the LSP read a frozen self-supervised encoder (DINOv3 / V-JEPA2 in the paper). Without
downloadable weights that encoder is random, and z and the LSP context carry little about the hand. This trains a
small DINOv3-architecture ViT on the frames of every train clip (lab and wild, every boundary frame) and saves it
as a standard `DINOv3ViTModel` folder (safetensors + `ViTImageProcessor` config) that `AutoModel` loads and
`trainers/pretrain.py --ssl_encoder_name_or_path` takes.

Objective: masked latent prediction with an EMA teacher (the JEPA family of V-JEPA2, in the data2vec / iBOT form):

* the teacher (an EMA copy of the student, never trained by gradients) encodes a clean view of the frame; its
  patch features, layer-normalised without affine, are the targets;
* the student encodes a second view of the same crop (same geometry, its own colour jitter) in which blocks of
  patches are replaced by DINOv3's own `mask_token` (`bool_masked_pos`);
* a narrow predictor (a small transformer with its own positions) maps the student's tokens to the targets at
  every patch: masked ones must be inferred from context, visible ones across the colour change;
* VICReg's variance and covariance terms on the student's patch features keep every dimension spread over the
  batch and the dimensions decorrelated.

Why this objective: it trains the patch tokens directly, and the patch tokens are what JALA reads (CLS and
registers are dropped). It keeps the spatial layout (both views share one crop), which a wrist-position probe
and the LAP need, while colour jitter between the views teaches the features to ignore the wild scenes' lighting
and backgrounds. DINO's global objective trains mostly the CLS token and wants crops that move content around, and
at the tiny size it needs many epochs and careful temperatures; masked latent prediction learns in a few thousand
CPU steps. Collapse (a constant output would predict a constant target) is held off by the EMA teacher with a
predictor (I-JEPA's recipe), per-token target normalisation and the variance term; the log shows the teacher
features' per-dimension std and effective rank, which fall towards 0 and 1 on collapse.

What mattered, measured with `benchmarks/ssl_probe.py` on the 800-clip UniHand-Mix (800 steps each): without the
covariance term the effective rank fell from ~38 to ~17 of 64 and the probe was no better than a random encoder
(test_lab wrist R² 0.60 vs 0.61-0.68 over random seeds); with it the rank stays ~40 and the encoder beats random
init on train leave-one-out, test_lab and test_wild (the visible-patch weight, 0.25 or 1, and the mask ratio
changed little). Four layers instead of two did not help at this budget (0.65, without the covariance term), so
the default stays the tiny structure's two.

Frames: every boundary frame of the train split, decoded once through `UniHandCollator` at 1.5x the encoder's
input size and kept in memory; each step draws random-resized crops (both views share one), so the stored size
only sets the crop resolution.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm
from transformers import DINOv3ViTConfig, DINOv3ViTModel, HfArgumentParser, set_seed

if __package__ in (None, ""):  # `python trainers/train_ssl_encoder.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_scripts.collator import UniHandCollator
from dataset_scripts.streaming import UniHandStream
from modeling_jala.ssl_features_jala import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    select_ssl_tokens,
    ssl_image_processor,
    ssl_num_prefix_tokens,
)
from trainers.hub_folder import hub_repo_ids, portable_values
from trainers.model_card import front_matter
from trainers.plotting import plot_training_curves

logger = logging.getLogger("jala.train_ssl_encoder")

#: Columns the frame bank reads: no `motion`, so labels cannot leak into the objective.
FRAME_COLUMNS = (
    "id",
    "source",
    "domain",
    "instruction",
    "task_type",
    "label_source",
    "label_confidence",
    "labelled",
    "hands_present",
    "num_frames",
    "camera_intrinsics",
    "first_frame",
    "boundary_frames",
)


@dataclass
class SslEncoderArguments:
    dataset: list[str] = field(default_factory=list, metadata={"help": "UniHand-Mix repo folder(s); train split."})
    output_dir: str = field(default="outputs/ssl_encoder", metadata={"help": "Where the encoder folder goes."})
    max_steps: int = field(default=3000, metadata={"help": "Optimizer steps (the schedules span these)."})
    max_minutes: float | None = field(
        default=None, metadata={"help": "Stop after this wall time; schedules then follow elapsed time."}
    )
    seed: int = field(default=0)
    hidden_size: int = field(default=64, metadata={"help": "Encoder width (tiny JALA structure: 64)."})
    num_layers: int = field(default=2, metadata={"help": "Encoder blocks (tiny JALA structure: 2)."})
    num_heads: int = field(default=4)
    intermediate_size: int | None = field(default=None, metadata={"help": "MLP width; default 2 x hidden_size."})
    image_size: int = field(default=64, metadata={"help": "Encoder input side in pixels (tiny: 64)."})
    patch_size: int = field(default=16, metadata={"help": "Patch side in pixels (tiny: 16, a 4x4 grid at 64 px)."})
    batch_size: int = field(default=128)
    learning_rate: float = field(default=1e-3)
    weight_decay: float = field(default=0.05)
    warmup_fraction: float = field(default=0.05, metadata={"help": "Linear warmup share of training, then cosine."})
    max_grad_norm: float = field(default=1.0)
    mask_ratio_min: float = field(default=0.3, metadata={"help": "Smallest share of patches masked per frame."})
    mask_ratio_max: float = field(default=0.6, metadata={"help": "Largest share of patches masked per frame."})
    visible_weight: float = field(default=1.0, metadata={"help": "Loss weight of visible relative to masked."})
    variance_weight: float = field(default=1.0, metadata={"help": "Weight of the variance hinge (0 disables)."})
    covariance_weight: float = field(
        default=0.04,
        metadata={"help": "Weight of VICReg's covariance term against dimensional collapse (0 disables)."},
    )
    ema_decay_start: float = field(default=0.99, metadata={"help": "Teacher EMA decay at the start (cosine)."})
    ema_decay_end: float = field(default=0.999, metadata={"help": "Teacher EMA decay at the end."})
    predictor_width: int = field(default=64)
    predictor_layers: int = field(default=2)
    crop_scale_min: float = field(default=0.5, metadata={"help": "Smallest crop area as a share of the frame."})
    color_jitter: float = field(default=0.4, metadata={"help": "Brightness/contrast/saturation jitter strength."})
    grayscale_probability: float = field(default=0.2)
    max_frames: int | None = field(default=None, metadata={"help": "Cap on frames kept in memory (None: all)."})
    log_every: int = field(default=50)
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu or cuda."})
    num_threads: int | None = field(
        default=None, metadata={"help": "torch CPU threads (default: torch's); 1 is often fastest on a busy machine."}
    )
    card_datasets: list[str] = field(
        default_factory=list,
        metadata={"help": "Hub ids for the card's datasets metadata; default: the --dataset values that are Hub ids."},
    )

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(f"--image_size {self.image_size} must be a multiple of --patch_size {self.patch_size}.")
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 4:
            raise ValueError(
                f"--hidden_size {self.hidden_size} / --num_heads {self.num_heads} must be a multiple of 4 "
                "(DINOv3's 2D RoPE splits each head in four)."
            )
        if not 0.0 < self.mask_ratio_min <= self.mask_ratio_max < 1.0:
            raise ValueError(
                f"need 0 < --mask_ratio_min <= --mask_ratio_max < 1, got {self.mask_ratio_min}, {self.mask_ratio_max}."
            )
        if not 0.0 < self.crop_scale_min <= 1.0:
            raise ValueError(f"--crop_scale_min must be in (0, 1], got {self.crop_scale_min}.")
        if not 0.0 <= self.ema_decay_start <= self.ema_decay_end < 1.0:
            raise ValueError("need 0 <= --ema_decay_start <= --ema_decay_end < 1.")
        if self.max_steps < 1:
            raise ValueError(f"--max_steps must be >= 1, got {self.max_steps}.")


def encoder_config(args: SslEncoderArguments) -> DINOv3ViTConfig:
    """The DINOv3 ViT structure; the defaults are `trainers.presets.jala_structure('tiny')`'s encoder."""
    return DINOv3ViTConfig(
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size or 2 * args.hidden_size,
        num_hidden_layers=args.num_layers,
        num_attention_heads=args.num_heads,
        image_size=args.image_size,
        patch_size=args.patch_size,
        num_register_tokens=0,
    )


# ------------------------------------------------------------------------------------------------------------
# Frames and views
# ------------------------------------------------------------------------------------------------------------


def load_frame_bank(
    repos: list[str], size: int, max_frames: int | None = None, batch_rows: int = 64, progress: bool = True
) -> Tensor:
    """(F, 3, size, size) uint8: every boundary frame (the first frame included) of every train clip."""
    if not repos:
        raise ValueError("--dataset is required: one or more UniHand-Mix folders (python -m dataset_scripts build).")
    stream = UniHandStream(
        repos, split="train", infinite=False, shuffle=False, columns=FRAME_COLUMNS, rank=0, world_size=1
    )
    collator = UniHandCollator(image_size=size, boundary="images")
    frames: list[Tensor] = []
    rows: list[dict[str, Any]] = []
    count = 0
    bar = tqdm(desc="decoding frames", unit="frame", disable=not progress)

    def flush() -> None:
        nonlocal count
        batch = collator(rows)
        kept = batch["boundary_frames"][batch["boundary_mask"]]
        frames.append(kept.permute(0, 3, 1, 2).contiguous())
        count += len(kept)
        bar.update(len(kept))
        rows.clear()

    for row in stream:
        rows.append(row)
        if len(rows) == batch_rows:
            flush()
        if max_frames is not None and count >= max_frames:
            break
    if rows:
        flush()
    bar.close()
    if not frames:
        raise ValueError(f"no train clips in {repos}.")
    bank = torch.cat(frames)
    return bank[:max_frames] if max_frames is not None else bank


def crop_grids(batch: int, out_size: int, scale_min: float, generator: torch.Generator) -> Tensor:
    """Sampling grids (B, out, out, 2) of random-resized crops: area share in [scale_min, 1], aspect 3/4-4/3."""
    area = torch.empty(batch).uniform_(scale_min, 1.0, generator=generator)
    log_ratio = torch.empty(batch).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    ratio = log_ratio.exp()
    width = (area * ratio).sqrt().clamp(max=1.0)
    height = (area / ratio).sqrt().clamp(max=1.0)
    centre_x = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(batch, generator=generator) * 2 - 1) * (1 - height)
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = width, centre_x, height, centre_y
    return F.affine_grid(theta, [batch, 3, out_size, out_size], align_corners=False)


def color_jitter(images: Tensor, strength: float, grayscale_p: float, generator: torch.Generator) -> Tensor:
    """Per-image brightness, contrast and saturation factors in [1 - s, 1 + s], a small per-channel gain (hue-like
    shifts) and random grayscale, on (B, 3, H, W) images in [0, 1]."""
    batch = images.shape[0]

    def factors(spread: float) -> Tensor:
        return torch.empty(batch, 1, 1, 1).uniform_(1 - spread, 1 + spread, generator=generator)

    gray_weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    images = images * factors(strength)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factors(strength) + mean
    gray = (images * gray_weights).sum(1, keepdim=True)
    images = (images - gray) * factors(strength) + gray
    gain = torch.empty(batch, 3, 1, 1).uniform_(1 - strength / 4, 1 + strength / 4, generator=generator)
    images = images * gain
    to_gray = torch.rand(batch, 1, 1, 1, generator=generator) < grayscale_p
    gray = (images * gray_weights).sum(1, keepdim=True).expand_as(images)
    return torch.where(to_gray, gray, images).clamp(0.0, 1.0)


def make_views(frames: Tensor, args: SslEncoderArguments, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Teacher and student views of uint8 (B, 3, S, S) frames: one shared crop, independent colour jitter, ImageNet
    normalisation. Sharing the crop keeps patch i of both views on the same image content."""
    grid = crop_grids(frames.shape[0], args.image_size, args.crop_scale_min, generator)
    crops = F.grid_sample(frames.float() / 255.0, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    views = [
        (color_jitter(crops, args.color_jitter, args.grayscale_probability, generator) - mean) / std for _ in range(2)
    ]
    return views[0], views[1]


def block_masks(batch: int, grid: int, ratio_min: float, ratio_max: float, rng: np.random.Generator) -> Tensor:
    """(B, grid * grid) bool: rectangles of patches (random aspect) added until a drawn share of the grid is masked;
    at least one patch stays visible. Blocks, not scattered patches, so a masked patch's neighbours are often
    masked too and prediction needs context, not interpolation."""
    masks = np.zeros((batch, grid, grid), dtype=bool)
    total = grid * grid
    for b in range(batch):
        goal = max(1, min(total - 1, round(rng.uniform(ratio_min, ratio_max) * total)))
        while masks[b].sum() < goal:
            area = rng.uniform(0.5, 1.0) * (goal - masks[b].sum()) + 1
            aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
            height = int(np.clip(round(math.sqrt(area * aspect)), 1, grid))
            width = int(np.clip(round(math.sqrt(area / aspect)), 1, grid))
            top, left = rng.integers(0, grid - height + 1), rng.integers(0, grid - width + 1)
            masks[b, top : top + height, left : left + width] = True
        if masks[b].all():
            masks[b].flat[rng.integers(total)] = False
    return torch.from_numpy(masks.reshape(batch, total))


# ------------------------------------------------------------------------------------------------------------
# Model pieces
# ------------------------------------------------------------------------------------------------------------


class LatentPredictor(nn.Module):
    """Narrow transformer from the student's patch tokens (mask flags and grid positions added) to teacher
    features. Narrow and separate, as in I-JEPA, so the encoder's own output stays a representation rather than
    becoming the prediction."""

    def __init__(self, dim: int, width: int, layers: int, heads: int, num_patches: int) -> None:
        super().__init__()
        self.project_in = nn.Linear(dim, width)
        self.position = nn.Parameter(torch.randn(1, num_patches, width) * 0.02)
        self.mask_flag = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        block = nn.TransformerEncoderLayer(
            width, heads, 2 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.project_out = nn.Linear(width, dim)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        hidden = self.project_in(tokens) + self.position + mask[..., None].to(tokens.dtype) * self.mask_flag
        return self.project_out(self.norm(self.blocks(hidden)))


def patch_tokens(encoder: DINOv3ViTModel, pixels: Tensor, mask: Tensor | None = None) -> Tensor:
    """(B, P, D) patch tokens (the shared selection, unpooled): what JALA reads, and what this objective trains."""
    tokens = encoder(pixel_values=pixels, bool_masked_pos=mask).last_hidden_state
    return select_ssl_tokens(tokens, ssl_num_prefix_tokens(encoder.config), "patches", None)


def variance_hinge(features: Tensor, target_std: float = 1.0) -> Tensor:
    """VICReg's variance term: mean over dimensions of relu(target - std over samples)."""
    flat = features.reshape(-1, features.shape[-1])
    return F.relu(target_std - (flat.var(dim=0) + 1e-4).sqrt()).mean()


def covariance_penalty(features: Tensor) -> Tensor:
    """VICReg's covariance term: squared off-diagonal covariances over samples, summed, divided by the width."""
    flat = features.reshape(-1, features.shape[-1])
    flat = flat - flat.mean(0)
    covariance = flat.T @ flat / max(len(flat) - 1, 1)
    off_diagonal = covariance - torch.diag(torch.diagonal(covariance))
    return off_diagonal.square().sum() / flat.shape[-1]


@torch.no_grad()
def collapse_indicators(features: Tensor) -> dict[str, float]:
    """Per-dimension std over samples (mean over dims) and effective rank (exp entropy of the normalised singular
    values) of (..., D) features: both drop (towards 0 and 1) when the encoder collapses."""
    flat = features.reshape(-1, features.shape[-1]).float()
    flat = flat - flat.mean(0)
    singular = torch.linalg.svdvals(flat)
    p = singular / singular.sum().clamp_min(1e-12)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return {"feature_std": flat.std(0).mean().item(), "effective_rank": entropy.exp().item()}


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.lerp_(s, 1.0 - decay)


def schedule(progress: float, warmup: float) -> float:
    """Learning-rate factor: linear warmup over `warmup` of training, then cosine to 0."""
    if progress < warmup:
        return progress / max(warmup, 1e-8)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / max(1 - warmup, 1e-8))))


# ------------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------------


def training_step(
    student: DINOv3ViTModel,
    teacher: DINOv3ViTModel,
    predictor: LatentPredictor,
    frames: Tensor,
    args: SslEncoderArguments,
    generator: torch.Generator,
    rng: np.random.Generator,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of one batch of uint8 frames; returns (loss, parts incl. the teacher features for the indicators)."""
    device = next(student.parameters()).device
    teacher_view, student_view = (view.to(device) for view in make_views(frames, args, generator))
    grid = args.image_size // args.patch_size
    mask = block_masks(len(frames), grid, args.mask_ratio_min, args.mask_ratio_max, rng).to(device)
    with torch.no_grad():
        target_features = patch_tokens(teacher, teacher_view)
        targets = F.layer_norm(target_features, target_features.shape[-1:])
    student_features = patch_tokens(student, student_view, mask)
    errors = F.mse_loss(predictor(student_features, mask), targets, reduction="none").mean(-1)  # (B, P)
    weights = torch.where(mask, 1.0, args.visible_weight)
    prediction_loss = (errors * weights).sum() / weights.sum()
    normalised = F.layer_norm(student_features, student_features.shape[-1:])
    variance = variance_hinge(normalised)
    covariance = covariance_penalty(normalised) if args.covariance_weight > 0 else variance.new_zeros(())
    loss = prediction_loss + args.variance_weight * variance + args.covariance_weight * covariance
    parts = {
        "prediction_loss": prediction_loss.detach(),
        "masked_loss": errors[mask].mean().detach(),
        "variance_loss": variance.detach(),
        "covariance_loss": covariance.detach(),
        "teacher_features": target_features,
    }
    return loss, parts


def train(args: SslEncoderArguments) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO)
    set_seed(args.seed)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    output_dir = Path(args.output_dir)
    bank = load_frame_bank(args.dataset, round(args.image_size * 1.5), args.max_frames)
    logger.info("frame bank: %d frames of %s px", len(bank), tuple(bank.shape[-2:]))

    config = encoder_config(args)
    student = DINOv3ViTModel(config).to(device).train()
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    grid = args.image_size // args.patch_size
    predictor = LatentPredictor(
        args.hidden_size, args.predictor_width, args.predictor_layers, max(1, args.predictor_width // 16), grid * grid
    ).to(device)
    parameters = [p for p in [*student.parameters(), *predictor.parameters()] if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=args.weight_decay, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    history: list[dict[str, Any]] = []
    started = time.monotonic()
    limit = None if args.max_minutes is None else 60.0 * args.max_minutes
    progress_bar = tqdm(range(args.max_steps), desc="training SSL encoder", unit="step")
    step = 0
    for step in progress_bar:
        elapsed = time.monotonic() - started
        progress = max(step / args.max_steps, elapsed / limit if limit else 0.0)
        if progress >= 1.0:
            logger.info("stopping at step %d: --max_minutes %.1f reached", step, args.max_minutes)
            break
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * schedule(progress, args.warmup_fraction)
        index = torch.randint(len(bank), (args.batch_size,), generator=generator)
        loss, parts = training_step(student, teacher, predictor, bank[index], args, generator, rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
        optimizer.step()
        decay = args.ema_decay_end - (args.ema_decay_end - args.ema_decay_start) * 0.5 * (
            1 + math.cos(math.pi * progress)
        )
        ema_update(teacher, student, decay)
        if step % args.log_every == 0 or step == args.max_steps - 1:
            record = {
                "step": step,
                "seconds": round(time.monotonic() - started, 1),
                "loss": loss.item(),
                **{key: value.item() for key, value in parts.items() if value.dim() == 0},
                **collapse_indicators(parts["teacher_features"]),
                "lr": optimizer.param_groups[0]["lr"],
                "ema_decay": decay,
            }
            history.append(record)
            progress_bar.set_postfix(
                loss=f"{record['loss']:.4f}",
                std=f"{record['feature_std']:.3f}",
                rank=f"{record['effective_rank']:.1f}",
            )
    else:
        step = args.max_steps
    seconds = time.monotonic() - started
    report = {
        "output_dir": output_dir.resolve().name,  # the folder's name only: the report is published with it
        "steps": step,
        "train_seconds": round(seconds, 1),
        "frames": len(bank),
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1]["loss"] if history else None,
        "final_feature_std": history[-1]["feature_std"] if history else None,
        "final_effective_rank": history[-1]["effective_rank"] if history else None,
        "history": history,
    }
    save_encoder(teacher, output_dir, args, report)
    logger.info("saved the EMA teacher encoder to %s after %d steps (%.1f min)", output_dir, step, seconds / 60)
    return report


def save_encoder(encoder: DINOv3ViTModel, output_dir: Path, args: SslEncoderArguments, report: dict) -> None:
    """A standard transformers folder: config + safetensors + image processor, plus log, curve and card; publishable
    as it is (no pickle; recorded arguments and the card keep Hub ids and only the folder names of local paths)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    encoder = encoder.to("cpu").eval()
    encoder.save_pretrained(output_dir)
    # What JALA's processor feeds the encoder: resize, ImageNet mean / std (saved so every reader agrees).
    ssl_image_processor(args.image_size).save_pretrained(output_dir)
    arguments = portable_values(asdict(args))
    (output_dir / "training_args.json").write_text(json.dumps(arguments, indent=2))
    summary = portable_values({key: value for key, value in report.items() if key != "history"})
    (output_dir / "train_report.json").write_text(json.dumps(summary, indent=2))
    with open(output_dir / "training_log.jsonl", "w") as log:
        for record in report["history"]:
            log.write(json.dumps(record) + "\n")
    plot_training_curves(
        report["history"],
        ["loss", "masked_loss", "variance_loss", "feature_std", "effective_rank"],
        output_dir / "training_curve.png",
    )
    config = encoder.config
    sources = ", ".join(arguments["dataset"])
    metadata = front_matter(
        ["dinov3", "self-supervised", "hand-motion"],
        "image-feature-extraction",
        datasets=args.card_datasets or hub_repo_ids(args.dataset),
    )
    (output_dir / "README.md").write_text(
        metadata
        + f"""
# JALA frame encoder (self-supervised on UniHand-Mix)

A `DINOv3ViTModel` ({config.num_hidden_layers} layers, width {config.hidden_size}, {config.image_size} px input,
{config.patch_size} px patches) trained by masked latent prediction with an EMA teacher on the frames of
{sources} (train split, labels unused): {report["steps"]} steps, {report["train_seconds"] / 60:.1f}
min, {report["frames"]} frames. This folder holds the EMA teacher. Final loss {report["final_loss"]:.4f}, teacher
feature std {report["final_feature_std"]:.3f}, effective rank {report["final_effective_rank"]:.1f} of
{config.hidden_size}.

```python
from transformers import AutoModel
encoder = AutoModel.from_pretrained("path/to/this/folder")
```

JALA reads its patch tokens (`modeling_jala.ssl_features_jala.encode_ssl_frames`); use it with
`python trainers/pretrain.py --ssl_encoder_name_or_path path/to/this/folder ...`. Trained by
`trainers/train_ssl_encoder.py`; the settings are in `training_args.json`, the curve in `training_curve.png`.
"""
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments (see `--help`), train, save; returns the report (steps, time, losses, indicators)."""
    parser = HfArgumentParser(SslEncoderArguments, description=__doc__.splitlines()[0])
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    return train(args)


if __name__ == "__main__":
    main()
