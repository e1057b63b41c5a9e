"""How much of a pretraining batch is chunk padding, in stream order and with `--group_by_chunks` (length
bucketing, `trainers/chunk_buckets.py`), on a UniHand-Mix build. No model runs: the share of chunk slots that are
padding is what a step spends on nothing (each chunk is 2 x (K + 2) sequence positions).

    python benchmarks/chunk_padding.py --dataset outputs/quickstart/unihand_mix --batch 8 --max_chunks 4,10
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_scripts.streaming import UniHandStream
from trainers.chunk_buckets import ChunkCountBuckets, padded_chunk_share


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", required=True, help="UniHand-Mix folder(s)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max_chunks", default="4,10", help="comma-separated collator max_chunks values")
    parser.add_argument("--rows", type=int, default=4000, help="training rows drawn from the shuffled stream")
    parser.add_argument("--output", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    stream = UniHandStream(args.dataset, split="train", columns=["num_frames"], rank=0, world_size=1, seed=0)
    rows = list(itertools.islice(iter(stream), args.rows))
    lines = [
        f"# Chunk padding per batch, {len(rows)} training rows of {', '.join(Path(d).name for d in args.dataset)}, "
        f"batch {args.batch}, {datetime.date.today()}",
        "| max_chunks | padded chunk slots, stream order | with --group_by_chunks |",
        "|---|---|---|",
    ]
    for max_chunks in (int(value) for value in args.max_chunks.split(",")):
        plain = padded_chunk_share(rows, args.batch, max_chunks)
        bucketed = padded_chunk_share(list(ChunkCountBuckets(rows, args.batch, max_chunks)), args.batch, max_chunks)
        lines.append(f"| {max_chunks} | {100 * plain:.1f} % | {100 * bucketed:.1f} % |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return table


if __name__ == "__main__":
    main()
