"""The Table 1 benchmark's planning and bookkeeping (benchmarks/table1_ablation.py): which runs, on which data
folders, with which flags, and how seeds are summarised. The training itself is `trainers/pretrain.py`'s."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import table1_ablation as table1  # noqa: E402

from trainers.pretrain import parse_arguments  # noqa: E402


def test_plan_has_every_variant_per_seed_then_jala_at_the_other_multiples() -> None:
    runs = table1.plan_runs(list(table1.VARIANTS), [0, 1, 2], main_multiple=4, multiples=[0, 1, 4])
    main = runs[: 3 * len(table1.VARIANTS)]
    assert {(run.variant, run.seed) for run in main} == {(v, s) for v in table1.VARIANTS for s in (0, 1, 2)}
    assert all(run.wild_multiple == 4 for run in main)
    assert [run.seed for run in main[: len(table1.VARIANTS)]] == [0] * len(table1.VARIANTS)  # seed-major
    scaling = runs[3 * len(table1.VARIANTS) :]
    assert sorted((run.wild_multiple, run.seed) for run in scaling) == [(m, s) for m in (0, 1) for s in (0, 1, 2)]
    assert {run.variant for run in scaling} == {table1.REFERENCE}
    assert len({run.name for run in runs}) == len(runs)


def test_wild_folders_nest_so_a_larger_multiple_reads_a_superset(tmp_path: Path) -> None:
    assert table1.wild_increments([0, 1, 4]) == [(1, 4)]
    assert table1.wild_increments([0, 1, 2, 8]) == [(1, 2), (2, 8)]
    assert table1.wild_increments([0, 1]) == []
    multiples = [0, 1, 2, 8]
    names = {m: [p.name for p in table1.datasets_for(tmp_path, m, multiples)] for m in multiples}
    assert names[0] == names[1] == ["unihand_mix"]
    assert names[2] == ["unihand_mix", "wild_1x_to_2x"]
    assert names[8] == ["unihand_mix", "wild_1x_to_2x", "wild_2x_to_8x"]


def _args(tmp_path: Path, **overrides: object) -> argparse.Namespace:
    values = {
        "output_dir": tmp_path,
        "wild_multiples": [0, 1, 4],
        "structure": "tiny",
        "save_steps": 300,
        "steps": None,
        "batch_size": None,
        "learning_rate": None,
        "pretrain_flags": "",
    }
    return argparse.Namespace(**{**values, **overrides})


def test_pretrain_flags_reach_pretrain_with_every_data_folder(tmp_path: Path) -> None:
    shared = {"data": tmp_path / "data", "tokenizer": tmp_path / "tok", "ssl": tmp_path / "ssl"}
    args = _args(tmp_path, steps=50)
    model_args, data_args, training_args, _ = parse_arguments(
        table1.pretrain_argv(args, shared, table1.Run("JALA", 4, 1))
    )
    # Every folder arrives (a repeated --dataset flag would keep only the last one).
    assert [Path(p).name for p in data_args.dataset] == ["unihand_mix", "wild_1x_to_4x"]
    assert model_args.variant == "jala" and data_args.lab_weight is None
    assert training_args.max_steps == 50 and training_args.seed == 1
    assert training_args.per_device_train_batch_size == 8  # the tiny preset where the benchmark says nothing

    extra = _args(tmp_path, pretrain_flags="--description_share 0.25 --warmup_steps=0.1")
    _, data_args, training_args, _ = parse_arguments(table1.pretrain_argv(extra, shared, table1.Run("JALA", 4, 0)))
    assert data_args.description_share == 0.25 and training_args.warmup_steps == 0.1
    # A user's pretrained frame encoder (the README's lever) replaces the shared small one.
    swapped = _args(tmp_path, pretrain_flags="--ssl_encoder_name_or_path=facebook/dinov3-vits16-pretrain-lvd1689m")
    model_args, _, _, _ = parse_arguments(table1.pretrain_argv(swapped, shared, table1.Run("JALA", 4, 0)))
    assert model_args.ssl_encoder_name_or_path == "facebook/dinov3-vits16-pretrain-lvd1689m"

    _, data_args, _, _ = parse_arguments(table1.pretrain_argv(args, shared, table1.Run("JALA", 0, 0)))
    assert data_args.lab_weight == 1.0  # 0x wild: the base build's lab clips only
    model_args, data_args, _, _ = parse_arguments(table1.pretrain_argv(args, shared, table1.Run("lab-only", 4, 0)))
    assert (model_args.variant, data_args.lab_weight) == ("wo_align", 1.0)


def _result(run: table1.Run, mpjpe: tuple[float, float]) -> dict:
    metrics = {key: 1.0 for key in table1.METRICS}
    return {
        "run": {"variant": run.variant, "wild_multiple": run.wild_multiple, "seed": run.seed},
        "evaluation": {
            split: {**metrics, "mpjpe_mm": value} for split, value in zip(table1.SPLITS, mpjpe, strict=True)
        },
        "health": {"mcp_accuracy": 0.1 * (run.seed + 1)},
    }


def test_summary_means_stds_differences_and_scaling() -> None:
    results = {}
    for seed, (jala, lab_only, jala_0x) in enumerate([(100.0, 110.0, 120.0), (102.0, 114.0, 121.0)]):
        for variant, multiple, value in (("JALA", 4, jala), ("lab-only", 4, lab_only), ("JALA", 0, jala_0x)):
            run = table1.Run(variant, multiple, seed)
            results[run] = _result(run, (value, value + 50))
    summary = table1.summarise(results, main_multiple=4)
    assert list(summary["table"]) == ["lab-only", "JALA"]
    jala = summary["table"]["JALA"]["test_lab"]["mpjpe_mm"]
    assert jala["mean"] == pytest.approx(101.0) and jala["std"] == pytest.approx(np.std([100, 102], ddof=1))
    assert summary["table"]["JALA"]["health"]["mcp_accuracy"]["mean"] == pytest.approx(0.15)
    gap = summary["differences_from_jala"]["lab-only"]["test_wild"]["mpjpe_mm"]
    assert gap["mean"] == pytest.approx(11.0)
    assert gap["standard_error"] == pytest.approx(np.sqrt((8.0 + 2.0) / 2))  # variances 8 and 2, two seeds each
    assert gap["outside_2_se"]
    scaling = summary["scaling"]
    assert scaling["JALA"]["0"]["test_lab"]["mpjpe_mm"]["mean"] == pytest.approx(120.5)
    assert scaling["lab-only"]["0"] == scaling["lab-only"]["4"]  # lab-only reads no wild clip: one set of runs


def test_final_health_averages_the_last_tenth_of_training() -> None:
    history = [{"step": step, "mcp_accuracy": step / 100, "loss": 1.0} for step in range(25, 201, 25)]
    assert table1.final_health(history, 200) == {"mcp_accuracy": pytest.approx(2.0)}  # only step 200 is > 180
    history.append({"step": 200, "train_runtime": 5.0})
    assert table1.final_health(history, 200)["mcp_accuracy"] == pytest.approx(2.0)


def test_diagnostics_are_cached_per_weights_and_redone_for_a_retrained_run(tmp_path: Path) -> None:
    import os

    import torch

    from modeling_jala.modeling_jala import JalaForMotionPretraining
    from tests.fixtures.tiny_jala import tiny_jala_config, tiny_processor

    args = _args(tmp_path)
    run = table1.Run("JALA", 4, 0)
    hub = table1.run_folder(args, run) / "jala"
    torch.manual_seed(0)
    JalaForMotionPretraining(tiny_jala_config()).save_pretrained(hub)
    tiny_processor().save_pretrained(hub)
    shared = {"data": tmp_path / "data"}
    calls: list[str] = []

    def measure(model: object, processor: object, data: list[Path], measured: table1.Run) -> dict:
        calls.append(measured.name)
        return {"folders": [path.name for path in data]}

    def diagnose(applies=lambda config: True) -> dict:
        return table1.run_diagnostics(args, shared, [run], "diagnostic.json", applies, measure)

    assert diagnose() == {run: {"folders": ["unihand_mix", "wild_1x_to_4x"]}}
    assert diagnose() == {run: {"folders": ["unihand_mix", "wild_1x_to_4x"]}} and len(calls) == 1  # cached
    weights = hub / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))  # retrained
    diagnose()
    assert len(calls) == 2
    (table1.run_folder(args, run) / "diagnostic.json").unlink()
    assert diagnose(applies=lambda config: config.variant == "lapa") == {} and len(calls) == 2
