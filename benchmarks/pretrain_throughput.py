"""JALA pretraining throughput at the paper's structure, beside a plain InternVL training step.

    python benchmarks/pretrain_throughput.py --size paper --batch 8 --chunks 4 --dtype bfloat16   # on a GPU
    python benchmarks/pretrain_throughput.py --size tiny --batch 4 --chunks 2 --dtype float32     # on a CPU

Both steps use random weights, the same batch size and the same total sequence length: JALA's sequence is
[instruction, 256 image tokens, 2K LSP tokens, N chunks x 2 hands x (128 + 2) motion tokens]; the plain InternVL
step trains next-token prediction on a text + image sequence of that length. JALA's step includes the LAP on
precomputed SSL features (as at scale, where the builder stores them), the two losses and the decoupled EMA.
Prints a table (samples/s, tokens/s, MFU against the matmul peak measured in the same run, step time, peak memory)
with the device and date. `--checkpoint_every 0,2` adds rows with selective activation checkpointing (every n-th
layer's activations recomputed in the backward pass: less memory, more compute; what lets a larger batch fit).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling_jala.configuration_jala import JalaConfig, JalaMotionTokenizerConfig
from modeling_jala.modeling_jala import JalaForMotionPretraining
from trainers.presets import jala_structure

TEXT_TOKENS = 24


def jala_config(size: str, attention: str = "dense") -> JalaConfig:
    """The paper or tiny structure with `block_causal_attention=attention` (dense mask or FlexAttention)."""
    if size == "paper":
        return JalaConfig(block_causal_attention=attention)
    return jala_structure(
        "tiny",
        vocab_size=64,
        image_token_id=63,
        tokenizer_config=JalaMotionTokenizerConfig(),
        block_causal_attention=attention,
    )


def synthetic_batch(config: JalaConfig, batch: int, chunks: int, device: torch.device, dtype: torch.dtype) -> dict:
    vision = config.vlm_config.vision_config
    image_tokens = config.vlm_config.image_seq_length
    image_token = config.vlm_config.image_token_id
    text = torch.randint(0, min(image_token, 1000), (batch, TEXT_TOKENS), device=device)
    input_ids = torch.cat([text, torch.full((batch, image_tokens), image_token, device=device)], dim=1)
    encoder = config.ssl_encoder_config
    patches = (encoder.image_size // encoder.patch_size) ** 2
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values": torch.randn(batch, 3, *vision.image_size, device=device, dtype=dtype),
        "motion_token_ids": torch.randint(
            0,
            config.motion_tokenizer_config.codebook_size,
            (batch, chunks, 2, config.motion_tokens_per_chunk),
            device=device,
        ),
        "labelled": torch.arange(batch, device=device) % 2 == 0,  # half labelled, half wild
        "ssl_features": torch.randn(batch, chunks + 1, patches, encoder.hidden_size, device=device, dtype=dtype),
    }


def timed_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps


def language_model_matmul_parameters(config: JalaConfig) -> int:
    """The language model's parameters as the N of the usual 6 N FLOPs per trained token: the attention and MLP
    projections of every decoder layer plus the (tied) embedding matrix once — InternVL3-2B's Qwen2: 1.54 B, the
    convention of the 2026-11-26 record (35 % MFU)."""
    text = config.vlm_config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    width, key_value = text.hidden_size, text.num_key_value_heads * head_dim
    per_layer = 2 * width * width + 2 * width * key_value + 3 * width * text.intermediate_size
    return text.num_hidden_layers * per_layer + text.vocab_size * width


def measured_matmul_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """The chip's dense matmul throughput measured here (TFLOP/s): the denominator of the MFU column."""
    size = 8192 if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    seconds = timed_steps(lambda: a @ b, 20 if device.type == "cuda" else 3, 3, device)
    return 2 * size**3 / seconds / 1e12


def jala_step_time(
    config,
    batch,
    chunks,
    device,
    dtype,
    steps,
    warmup,
    checkpoint_every: int = 0,
    compile_backend: str = "",
    liger: bool = False,
) -> tuple[float, int, float, float]:
    """Seconds per step, sequence length, peak memory and the first step's loss; `checkpoint_every` > 0
    recomputes every n-th layer's activations in the backward pass (transformers' selective activation
    checkpointing), 0 keeps them all; `compile_backend` compiles each decoder layer in place
    (`compile_decoder_layers`; compiled during warm-up); `liger` swaps in liger-kernel's fused RMSNorm / SwiGLU /
    rotary (`apply_liger_kernels`). Every row starts from the same weights, batch and masking draws, so the
    first-step losses of all rows must agree up to kernel rounding: the table checks the fast paths too."""
    torch.manual_seed(0)
    model = JalaForMotionPretraining(config).to(device=device, dtype=dtype).train()
    if checkpoint_every:
        model.activation_checkpointing_enable(every_n_layers=checkpoint_every)
    if compile_backend:
        model.compile_decoder_layers(backend=compile_backend)
    if liger:
        model.apply_liger_kernels()
    inputs = synthetic_batch(config, batch, chunks, device, dtype)
    torch.manual_seed(1)
    with torch.no_grad():
        first_loss = float(model(**inputs).loss)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-5, betas=(0.9, 0.95))

    def step() -> None:
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.ema_step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timed_steps(step, steps, warmup, device)
    length = (
        inputs["input_ids"].shape[1]
        + 2 * config.motion_tokens_per_chunk
        + chunks * 2 * (config.motion_tokens_per_chunk + 2)
    )
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return seconds, length, memory, first_loss


def internvl_step_time(config, batch, length, device, dtype, steps, warmup) -> tuple[float, float]:
    from transformers import InternVLForConditionalGeneration

    model = InternVLForConditionalGeneration(config.vlm_config).to(device=device, dtype=dtype).train()
    image_tokens = config.vlm_config.image_seq_length
    image_token = config.vlm_config.image_token_id
    text = torch.randint(0, min(image_token, 1000), (batch, length - image_tokens), device=device)
    input_ids = torch.cat([torch.full((batch, image_tokens), image_token, device=device), text], dim=1)
    labels = input_ids.masked_fill(input_ids == image_token, -100)
    pixel_values = torch.randn(batch, 3, *config.vlm_config.vision_config.image_size, device=device, dtype=dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, betas=(0.9, 0.95))

    def step() -> None:
        model(input_ids=input_ids, pixel_values=pixel_values, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timed_steps(step, steps, warmup, device)
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return seconds, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--attention", default="dense", help="comma-separated block_causal_attention: dense, flex")
    parser.add_argument(
        "--checkpoint_every",
        default="0",
        help="comma-separated activation checkpointing strides: 0 = off, 1 = every layer, 2 = every other layer",
    )
    parser.add_argument(
        "--compile_decoder_layers",
        default="",
        help="torch.compile backend (e.g. inductor): adds a row per attention with the decoder layers compiled",
    )
    parser.add_argument(
        "--liger",
        action="store_true",
        help="add a row per attention with liger-kernel's fused RMSNorm / SwiGLU / rotary (CUDA + pip install "
        "liger-kernel); run last, after the plain InternVL step, because liger patches transformers' Qwen2 classes "
        "for the whole process",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the table here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    jala_rows, length = [], 0
    settings = [(every, "") for every in (int(value) for value in args.checkpoint_every.split(","))]
    settings += [(0, args.compile_decoder_layers)] if args.compile_decoder_layers else []

    def measure(attention: str, every: int, backend: str, liger: bool) -> int:
        config = jala_config(args.size, attention)
        seconds, length, memory, loss = jala_step_time(
            config, args.batch, args.chunks, device, dtype, args.steps, args.warmup, every, backend, liger
        )
        jala_rows.append((attention, every, backend, liger, seconds, memory, loss))
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return length

    for attention in args.attention.split(","):
        for every, backend in settings:
            length = measure(attention, every, backend, liger=False)
    plain_seconds, plain_memory = internvl_step_time(
        jala_config(args.size), args.batch, length, device, dtype, args.steps, args.warmup
    )
    for attention in args.attention.split(",") if args.liger else []:
        measure(attention, 0, "", liger=True)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = measured_matmul_tflops(device, dtype)
    flops_per_token = 6 * language_model_matmul_parameters(jala_config(args.size))

    def cells(seconds: float, memory: float, loss: float = float("nan")) -> str:
        tokens = args.batch * length / seconds
        mfu = 100 * tokens * flops_per_token / (peak * 1e12)
        return f"{args.batch / seconds:.2f} | {tokens:,.0f} | {mfu:.1f} % | {seconds:.3f} | {memory:.1f} | {loss:.4f}"

    lines = [
        f"# Pretraining throughput, {args.size} structure, {args.dtype}, batch {args.batch}, {args.chunks} chunks "
        f"(sequence {length} tokens) — {name}, torch {torch.__version__}, {datetime.datetime.now():%Y-%m-%d %H:%M}; "
        f"MFU = 6 x {flops_per_token / 6e6:,.1f} M language-model FLOPs per token / measured {args.dtype} matmul peak "
        f"{peak:.1f} TFLOP/s",
        "| step | samples/s | tokens/s | MFU | s/step | peak GiB | first-step loss (same draws) |",
        "|---|---|---|---|---|---|---|",
    ]
    checkpointing = {0: "", 1: ", every layer checkpointed"}
    lines += [
        f"| JALA (MCP + alignment + EMA), {attention} block-causal mask"
        f"{checkpointing.get(every, f', 1 in {every} layers checkpointed')}"
        f"{f', decoder layers compiled ({backend})' if backend else ''}"
        f"{', liger-kernel RMSNorm / SwiGLU / rotary' if liger else ''} | {cells(seconds, memory, loss)} |"
        for attention, every, backend, liger, seconds, memory, loss in jala_rows
    ]
    lines.append(f"| plain InternVL next-token step | {cells(plain_seconds, plain_memory)} |")
    print("\n".join(lines))
    if args.output:
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
