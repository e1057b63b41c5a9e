"""Whether a pretrained JALA model reads its context: per chunk position, the cross-entropy of a fully hidden
chunk's true tokens under the model vs under the training code frequencies of that hand and chunk position
(`trainers/context_use.py`). Chunk 0 sees only the instruction, the first frame and the LSP tokens, so its gain over
the prior is what the context gives; later chunks also see the earlier (true) chunks.

    python benchmarks/context_use.py outputs/quickstart/jala --dataset outputs/quickstart/unihand_mix
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.processing_jala import JalaProcessor
from trainers.context_use import chunk_position_log_prior, hidden_chunk_cross_entropy
from trainers.motion_baselines import labelled_rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a JalaForMotionPretraining folder")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--splits", nargs="+", default=["train", "test_lab", "test_wild"])
    parser.add_argument("--clips", type=int, default=48, help="labelled clips per split")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = JalaForMotionPretraining.from_pretrained(args.model).eval()
    processor = JalaProcessor.from_pretrained(args.model)
    log_prior = chunk_position_log_prior(model.motion_tokenizer, labelled_rows([args.dataset], "train", 100_000))
    results = {
        split: hidden_chunk_cross_entropy(model, processor, args.dataset, split, log_prior, max_clips=args.clips)
        for split in args.splits
    }
    lines = ["| split | chunk | model (nats) | prior (nats) | gain | tokens |", "|---|---|---|---|---|---|"]
    for split, rows in results.items():
        for row in rows:
            lines.append(
                f"| {split} | {row['chunk']} | {row['model_nats']:.3f} | {row['prior_nats']:.3f} | "
                f"{row['gain_nats']:+.3f} | {row['tokens']} |"
            )
    print("\n".join(lines))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
