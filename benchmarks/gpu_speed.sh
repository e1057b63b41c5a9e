#!/usr/bin/env bash
# The GPU speed check of the "fast on the GPU" work, as one script for a lent machine (about 8 minutes on an H100):
# the earlier configuration (dense block-causal mask, eager DiT) rerun beside the new paths in the same process, so
# every ratio is same-card. Writes benchmarks/results/*_<card>_<date>.{json,md}.
#
#   bash benchmarks/gpu_speed.sh            # on the GPU machine, from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
card=$($PYTHON -c "import torch; print(torch.cuda.get_device_name().lower().replace(' ', '_'))")
day=$(date +%F)
out=benchmarks/results
mkdir -p "$out"
# predict_action at the paper size, bf16, batch 1, 16-step chunk, 4 steps: dense vs flex attention, PIL vs tensor
# frames, and the DiT steps compiled as CUDA graphs (compile + capture time included as compile_s).
$PYTHON benchmarks/action_latency.py --sizes paper --attention dense,flex --compile reduce-overhead \
    --repeats 30 --warmup 5 --output "$out/action_latency_${card}_bf16_${day}.json"
# The pretraining step at the earlier record's batch and sequence: dense vs flex, each without and with every other
# layer checkpointed, beside a plain InternVL step; with liger-kernel installed (pip install liger-kernel, or its
# wheel carried to a machine without internet), also rows with its fused RMSNorm / SwiGLU / rotary. Every row's
# first-step loss is printed on the same draws, so the fast paths are checked against the dense reference too.
liger=$($PYTHON -c "import liger_kernel.transformers" 2>/dev/null && echo --liger || echo "")
[ -z "$liger" ] && echo "liger-kernel not importable: its rows are skipped" >&2
$PYTHON benchmarks/pretrain_throughput.py --size paper --batch 8 --chunks 4 --attention dense,flex --checkpoint_every 0,2 \
    $liger --steps 10 --warmup 3 --output "$out/pretrain_throughput_${card}_bf16_${day}.md"
