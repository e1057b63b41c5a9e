"""The whole JALA pipeline on embedded default data, on a CPU, in minutes (`make quickstart`).

1. Build a mini UniHand-Mix from the procedural hand world (lab + wild, held-out test_lab / test_wild scenes).
2. Train the motion tokenizer briefly on its labelled motion.
3. Pretrain a small ViT self-supervised on the clips' frames (labels never read) as the frozen SSL encoder, and
   measure it with a linear probe (first-frame wrist position / grip aperture) against the same ViT at random init.
4. Pretrain a tiny JALA (InternVL + DINOv3 structure at small widths) with masked chunk prediction + alignment,
   with the tiny structure's CPU training defaults.
5. Generate motion for held-out clips from the first frame and instruction; print MPJPE / PA-MPJPE / MWTE / MDE
   beside the mean-motion and nearest-neighbour baselines.
6. Reload the saved Hub folder with `AutoModel.from_pretrained(..., trust_remote_code=True)` in a fresh process
   and check it reproduces the in-process outputs.

    python -m trainers.quickstart --output_dir outputs/quickstart
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dataset_scripts.builder import build_unihand
from dataset_scripts.sources.synthetic import SyntheticSource
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.processing_jala import JalaProcessor
from trainers import pretrain, train_ssl_encoder, train_tokenizer
from trainers.evaluate_motion import evaluate_generation, fit_baselines, format_table
from trainers.model_card import write_jala_card
from trainers.ssl_probe import format_probe_table, probe_encoders

logger = logging.getLogger("jala.quickstart")

_RELOAD_CHECK = """
import sys
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoProcessor
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
out = model.model(**load_file(sys.argv[2]))
save_file({"h": out.predictive_embeddings.contiguous()}, sys.argv[3])
print(type(model).__name__, type(processor).__name__)
"""


#: The quickstart's budget and evaluation settings, shared with benchmarks that reuse its recipe (Table 1).
TOKENIZER_STEPS = 800
TOKENIZER_PRESET = "cpu"
SSL_STEPS = 1500
EVAL_CLIPS = 40
DECODING_STEPS = 8
ENSEMBLE = 2


def train_motion_tokenizer(data: Path, folder: Path, steps: int, seed: int, preset: str = TOKENIZER_PRESET) -> dict:
    """The motion tokenizer on every labelled clip of `data`, held-out reconstruction on test_lab; its report."""
    return train_tokenizer.main(
        [
            f"--output_dir={folder}",
            f"--preset={preset}",
            f"--dataset={data}",
            "--dataset_config=all",
            "--eval_split=test_lab",
            f"--max_steps={steps}",
            f"--seed={seed}",
        ]
    )


def train_frame_encoder(data: Path, folder: Path, steps: int, seed: int) -> None:
    """The self-supervised frame encoder on the frames of `data` (labels never read)."""
    train_ssl_encoder.main([f"--dataset={data}", f"--output_dir={folder}", f"--max_steps={steps}", f"--seed={seed}"])


def build_data(folder: Path, clips: dict[str, int], seed: int) -> None:
    if (folder / "README.md").exists():
        logger.info("reusing %s", folder)
        return
    sources = [
        SyntheticSource(domain="lab", split="train", num_clips=clips["lab"], seed=seed, workers=2),
        SyntheticSource(domain="wild", split="train", num_clips=clips["wild"], seed=seed + 1, workers=2),
        SyntheticSource(domain="lab", split="test_lab", num_clips=clips["test"], seed=seed + 2, workers=2),
        SyntheticSource(domain="wild", split="test_wild", num_clips=clips["test"], seed=seed + 3, workers=2),
    ]
    build_unihand(folder, sources)


def check_reload(folder: Path, model: JalaForMotionPretraining, processor: JalaProcessor, scratch: Path) -> str:
    """Run the saved folder through AutoModel in a fresh process; its h must equal the in-process model's."""
    import numpy as np

    inputs = processor(images=[np.full((64, 64, 3), 128, dtype=np.uint8)], text=["pick up the cup"])
    k = model.config.motion_tokens_per_chunk
    batch = {
        "input_ids": inputs["input_ids"],
        "attention_mask": inputs["attention_mask"],
        "pixel_values": inputs["pixel_values"],
        "ssl_pixel_values": inputs["ssl_pixel_values"][:, None].repeat(1, 3, 1, 1, 1),
        "motion_token_ids": torch.zeros(1, 2, 2, k, dtype=torch.long),
    }
    save_file({key: value.contiguous() for key, value in batch.items()}, scratch / "reload_inputs.safetensors")
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _RELOAD_CHECK,
            str(folder.resolve()),
            str((scratch / "reload_inputs.safetensors").resolve()),
            str((scratch / "reload_outputs.safetensors").resolve()),
        ],
        capture_output=True,
        text=True,
        cwd=scratch,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"reloading {folder} with AutoModel failed:\n{result.stderr[-3000:]}")
    with torch.no_grad():
        local = model.eval().model(**batch).predictive_embeddings
    reloaded = load_file(scratch / "reload_outputs.safetensors")["h"]
    # Another process may use another number of threads, hence another float summation order: compare closely,
    # not bitwise.
    if not torch.allclose(reloaded, local, atol=1e-5, rtol=1e-4):
        difference = float((reloaded - local).abs().max())
        raise RuntimeError(f"the reloaded model's outputs differ from the trained model's (max |diff| {difference})")
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/quickstart"))
    parser.add_argument("--lab_clips", type=int, default=400)
    parser.add_argument("--wild_clips", type=int, default=400)
    parser.add_argument("--test_clips", type=int, default=40)
    parser.add_argument("--tokenizer_steps", type=int, default=TOKENIZER_STEPS)
    parser.add_argument(
        "--tokenizer_preset",
        default=TOKENIZER_PRESET,
        help="motion tokenizer size (64-code codebooks, 4 residual layers: README 'CPU presets')",
    )
    parser.add_argument("--ssl_steps", type=int, default=SSL_STEPS, help="self-supervised encoder steps")
    parser.add_argument("--pretrain_steps", type=int, default=None, help="default: the tiny structure's preset")
    parser.add_argument(
        "--eval_clips",
        type=int,
        default=EVAL_CLIPS,
        help="held-out clips scored per split: those with the smallest ids",
    )
    parser.add_argument("--decoding_steps", type=int, default=DECODING_STEPS, help="masked-decoding passes per chunk")
    parser.add_argument("--ensemble", type=int, default=ENSEMBLE, help="decodings averaged per clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse_trained",
        action="store_true",
        help="skip tokenizer training / pretraining when their output folders already hold weights",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = args.output_dir
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    started = time.monotonic()
    data = out / "unihand_mix"
    build_data(data, {"lab": args.lab_clips, "wild": args.wild_clips, "test": args.test_clips}, args.seed)
    timings["build_data_min"] = (time.monotonic() - started) / 60

    started = time.monotonic()
    tokenizer_dir = out / "motion_tokenizer"
    reuse_tokenizer = args.reuse_trained and (tokenizer_dir / "model.safetensors").exists()
    tokenizer_report = (
        json.loads((tokenizer_dir / "eval_results.json").read_text())
        if reuse_tokenizer
        else train_motion_tokenizer(data, tokenizer_dir, args.tokenizer_steps, args.seed, args.tokenizer_preset)
    )
    timings["train_tokenizer_min"] = (time.monotonic() - started) / 60

    started = time.monotonic()
    ssl_dir = out / "ssl_encoder"
    if not (args.reuse_trained and (ssl_dir / "model.safetensors").exists()):
        train_frame_encoder(data, ssl_dir, args.ssl_steps, args.seed)
    timings["train_ssl_encoder_min"] = (time.monotonic() - started) / 60
    started = time.monotonic()
    probe = probe_encoders(data, {"self-supervised": ssl_dir}, random_init_seeds=(0,))
    timings["probe_min"] = (time.monotonic() - started) / 60

    started = time.monotonic()
    jala_dir = out / "jala"
    if not (args.reuse_trained and (jala_dir / "model.safetensors").exists()):
        steps = [] if args.pretrain_steps is None else [f"--max_steps={args.pretrain_steps}"]
        pretrain.main(
            [
                f"--dataset={data}",
                f"--motion_tokenizer={tokenizer_dir}",
                f"--ssl_encoder_name_or_path={ssl_dir}",
                f"--output_dir={jala_dir}",
                "--structure=tiny",
                *steps,
                "--max_chunks=4",
                "--logging_steps=25",
                "--save_strategy=no",
                "--eval_strategy=no",
                f"--seed={args.seed}",
                "--disable_tqdm=false",
            ]
        )
    timings["pretrain_min"] = (time.monotonic() - started) / 60

    started = time.monotonic()
    model = JalaForMotionPretraining.from_pretrained(jala_dir)
    processor = JalaProcessor.from_pretrained(jala_dir)
    baselines = fit_baselines(data, model, processor)
    results = {
        split: evaluate_generation(
            model,
            processor,
            data,
            split,
            max_clips=args.eval_clips,
            decoding_steps=args.decoding_steps,
            ensemble=args.ensemble,
            seed=args.seed,
            baselines=baselines,
        )
        for split in ("test_lab", "test_wild")
    }
    timings["evaluate_min"] = (time.monotonic() - started) / 60
    history = json.loads((jala_dir / "training_log.json").read_text())
    training_args = json.loads((jala_dir / "training_args.json").read_text())
    write_jala_card(jala_dir, model.config, history, training_args, results)
    reload_message = check_reload(jala_dir, model, processor, out)

    summary = {
        "timings_min": {key: round(value, 2) for key, value in timings.items()},
        "tokenizer": {key: round(value, 3) for key, value in tokenizer_report.items() if isinstance(value, float)},
        "ssl_probe": probe["results"],
        "generation": results,
    }
    (out / "quickstart_results.json").write_text(json.dumps(summary, indent=2))
    steps = training_args["max_steps"]
    print(format_probe_table(probe["results"]))
    print(format_table(results, title=f"JALA quickstart ({steps} pretraining steps on CPU)"))
    print(f"\nHub folder: {jala_dir} (reloaded with AutoModel in a fresh process: {reload_message}, outputs match)")
    print(f"timings (minutes): {summary['timings_min']}")
    return summary


if __name__ == "__main__":
    main()
