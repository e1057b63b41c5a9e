"""Latency of `JalaForActionPrediction.predict_action`: one camera image + instruction + state -> one action chunk.

Why: a VLA runs in the robot's control loop, so the time from observation to action chunk bounds the control rate
(with 16-step chunks at 10 Hz a chunk must come in well under 1.6 s; receding-horizon execution wants far less).
Sizes (random weights — latency does not depend on the values):

* `paper`: InternVL3-2B (InternViT-300M at 448 px + Qwen2.5-1.5B, kept up to the align layer 19) + the frozen
  DINOv3 ViT-L/16 at 224 px for the LSP + the DiT flow head 16 layers x 32 heads x width 2048, 4 Euler steps;
* `small`: the tiny JALA structure of the quickstart (width 128) + a DiT 4 x 4 x 128 — the Meta-World policy.

Each row times the whole call (image preprocessing included) and its parts: the backbone readout of h (vision
tower, SSL encoder, LSP, language model to the align layer) and the flow-matching sampler (4 DiT passes through
diffusers' scheduler), the latter also with the context's cross-attention keys / values computed once per chunk
(`sampler_context_cache_s`, what `predict_action` does). Times are medians over `--repeats` calls after
`--warmup`, with CUDA synchronised.

    python benchmarks/action_latency.py --sizes small             # CPU
    python benchmarks/action_latency.py --sizes paper,small --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmark_machine import cpu_model  # noqa: E402

from modeling_jala.configuration_jala import JalaConfig, JalaMotionTokenizerConfig  # noqa: E402
from modeling_jala.flow_head_jala import flow_matching_sample  # noqa: E402
from modeling_jala.modeling_jala_action import JalaForActionPrediction  # noqa: E402
from trainers.presets import build_processor, build_word_tokenizer, image_seq_length, jala_structure  # noqa: E402

logger = logging.getLogger("jala.benchmarks.action_latency")

INSTRUCTION = "pick up the red cup and place it on the plate"
HEADS = {
    "paper": {"hidden_size": 2048, "num_layers": 16, "num_heads": 32},
    "small": {"hidden_size": 128, "num_layers": 4, "num_heads": 4},
}


def build(
    size: str, device: torch.device, dtype: torch.dtype, attention: str = "dense"
) -> tuple[JalaForActionPrediction, object]:
    """A randomly initialised action model of the named size (constructed on `device`) and its processor;
    `attention` is `JalaConfig.block_causal_attention` (dense mask or FlexAttention BlockMask)."""
    tokenizer = build_word_tokenizer([INSTRUCTION])
    head = {**HEADS[size], "action_dim": 7, "state_dim": 8, "chunk_size": 16, "num_inference_steps": 4}
    if size == "paper":
        base = JalaConfig(motion_tokenizer_config=JalaMotionTokenizerConfig())
        base.vlm_config.image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    else:
        base = jala_structure(
            "tiny",
            vocab_size=len(tokenizer),
            image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
            tokenizer_config=JalaMotionTokenizerConfig(codebook_size=512, code_dim=64, hidden_size=128),
        )
    base.block_causal_attention = attention
    config = JalaForActionPrediction.config_for_actions(base, head)
    with torch.device(device):
        model = JalaForActionPrediction(config)
    model.to(dtype).eval()
    vision = config.vlm_config.vision_config
    processor = build_processor(
        tokenizer,
        image_size=vision.image_size[0] if isinstance(vision.image_size, list | tuple) else vision.image_size,
        ssl_image_size=config.ssl_encoder_config.image_size,
        image_seq_length=image_seq_length(config),
    )
    model.set_processor(processor)
    identity = {"mean": [0.0] * head["state_dim"], "std": [1.0] * head["state_dim"]}
    actions = {"mean": [0.0] * head["action_dim"], "std": [1.0] * head["action_dim"]}
    model.set_normalization_stats({"observation.state": identity, "action": actions})
    return model, processor


def timed(function: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median seconds of `function()` (CUDA synchronised around each call)."""
    samples = []
    for index in range(warmup + repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= warmup:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@torch.no_grad()
def measure(
    size: str,
    device: torch.device,
    dtype: torch.dtype,
    batch: int,
    repeats: int,
    warmup: int,
    attention: str = "dense",
    compile_mode: str | None = None,
) -> dict:
    model, processor = build(size, device, dtype, attention)
    if device.type == "cuda":  # the peak should show inference, not the float32 construction before the cast
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    head = model.config.action_head_config
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(batch)]
    state = rng.normal(size=(batch, head.state_dim)).astype(np.float32)
    inputs = processor(images=images, text=[INSTRUCTION] * batch, return_tensors="pt").to(device)
    for key in ("pixel_values", "ssl_pixel_values"):
        inputs[key] = inputs[key].to(dtype)
    state_tensor = torch.from_numpy(state).to(device)
    frames = torch.from_numpy(np.stack(images)).to(device)  # camera frames already on the device
    context, proprio = model._conditioning(dict(inputs), state_tensor)
    noise = torch.randn(batch, head.chunk_size, head.action_dim, device=device, dtype=dtype)

    def sampler(cached: bool = False, dit: torch.nn.Module | None = None) -> object:
        """The 4 DiT steps; `cached` computes the context's keys / values once for all of them, as predict_action
        does (the earlier configuration projected them again at every step)."""
        dit = dit or model.action_head
        cache = model.action_head.context_cache(context) if cached else None
        return flow_matching_sample(
            lambda x, s: dit(x, s, context, proprio, context_cache=cache),
            noise,
            model.scheduler,
            head.num_inference_steps,
        )

    row = {
        "size": size,
        "attention": attention,
        "batch": batch,
        "dtype": str(dtype).removeprefix("torch."),
        "parameters_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "dit_parameters_M": round(sum(p.numel() for p in model.action_head.parameters()) / 1e6, 1),
        "prefix_tokens": int(inputs["input_ids"].shape[1]),
        "predict_action_s": timed(lambda: model.predict_action(images, INSTRUCTION, state), device, repeats, warmup),
        "predict_action_tensor_frames_s": timed(
            lambda: model.predict_action(frames, INSTRUCTION, state), device, repeats, warmup
        ),
        "preprocess_s": timed(lambda: processor(images=images, text=[INSTRUCTION] * batch), device, repeats, warmup),
        "preprocess_tensor_frames_s": timed(
            lambda: processor(images=frames, text=[INSTRUCTION] * batch), device, repeats, warmup
        ),
        "backbone_s": timed(lambda: model._conditioning(dict(inputs), state_tensor), device, repeats, warmup),
        "sampler_s": timed(sampler, device, repeats, warmup),
        "sampler_context_cache_s": timed(lambda: sampler(cached=True), device, repeats, warmup),
    }
    if compile_mode is not None:
        # The DiT steps compiled (CUDA graphs with "reduce-overhead" on a GPU): the first call pays compile + capture.
        model.compile_inference(mode=compile_mode)
        row["compile_s"] = timed(lambda: model.predict_action(frames, INSTRUCTION, state), device, 1, 0)
        row["predict_action_compiled_s"] = timed(
            lambda: model.predict_action(frames, INSTRUCTION, state), device, repeats, warmup
        )
        row["sampler_compiled_s"] = timed(
            lambda: sampler(cached=True, dit=model._inference_action_head), device, repeats, warmup
        )
    if device.type == "cuda":
        row["peak_memory_GiB"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return row


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs)"


def table(rows: list[dict], header: str) -> str:
    columns = ["size", "attention", "batch", "dtype", "parameters_M", "dit_parameters_M", "prefix_tokens"]
    columns += ["predict_action_s", "predict_action_tensor_frames_s", "preprocess_s", "preprocess_tensor_frames_s"]
    columns += ["backbone_s", "sampler_s", "sampler_context_cache_s"]
    columns += ["compile_s", "predict_action_compiled_s", "sampler_compiled_s"]
    columns += ["peak_memory_GiB"]
    columns = [column for column in columns if any(column in row for row in rows)]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            cells.append(f"{value * 1000:.1f} ms" if column.endswith("_s") else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="small", help="comma-separated: paper, small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 (default: bfloat16 on CUDA, else float32)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--attention", default="dense", help="comma-separated block_causal_attention formats: dense, flex"
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--compile",
        default=None,
        help="also time predict_action with the DiT compiled in this torch.compile mode (e.g. reduce-overhead)",
    )
    parser.add_argument("--output", default=None, help="also write the rows (JSON) here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    torch.manual_seed(0)
    rows = []
    for size in args.sizes.split(","):
        if size not in HEADS:
            raise ValueError(f"unknown size {size!r}; choose from {sorted(HEADS)}.")
        for attention in args.attention.split(","):
            rows.append(measure(size, device, dtype, args.batch, args.repeats, args.warmup, attention, args.compile))
            logger.info("%s", rows[-1])
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
    header = (
        f"predict_action latency — {device_name(device)} — {datetime.datetime.now().isoformat(timespec='minutes')} "
        f"— torch {torch.__version__}, median of {args.repeats} calls after {args.warmup} warm-up"
    )
    logger.info("\n%s", table(rows, header))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        record = {
            "device": device_name(device),
            "date": datetime.datetime.now().isoformat(timespec="minutes"),
            "torch": torch.__version__,
            "repeats": args.repeats,
            "rows": rows,
        }
        Path(args.output).write_text(json.dumps(record, indent=1))
        Path(args.output).with_suffix(".md").write_text(table(rows, header) + "\n")
    return rows


if __name__ == "__main__":
    main()
