"""The datatrove pipeline (dataset_scripts/datatrove_pipeline.py) builds what the builder builds: the same shard
files (hence rows per split, ids and contents), card configs and split sizes, rejects; a stopped run resumes
without redoing finished tasks; the `build-datatrove` CLI works. Tiny fixture sources keep it fast; one test uses
the MuJoCo procedural source over two local worker processes."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

pytest.importorskip(
    "datatrove",
    reason="datatrove (the optional `scale` extra) is not installed: pip install 'datatrove>=0.10.1'",
)

from dataset_scripts import cli
from dataset_scripts.builder import build_unihand
from dataset_scripts.card import check_repo, read_card_yaml
from dataset_scripts.datatrove_pipeline import (
    build_with_datatrove,
    completed_tasks,
    default_work_dir,
    plan_tasks,
)
from dataset_scripts.repo_layout import BUILD_INFO_FILE, read_build_info
from dataset_scripts.schema import RowValidationError
from dataset_scripts.streaming import table_to_rows
from tests.fixtures.unihand_factory import FixtureSource

PLUGIN = "tests.fixtures.unihand_factory"
LAYOUT = {"shard_bytes": "150KB", "row_group_rows": 4}


def _file_hashes(repo: Path) -> dict[str, str]:
    return {
        path.relative_to(repo).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(repo.glob("data/*/*.parquet"))
    }


def _rows_by_split(repo: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """split -> id -> row, read from the shards (both domains)."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(repo.glob("data/*/*.parquet")):
        split = path.name.rsplit("-", 1)[0]
        for row in table_to_rows(pq.read_table(path)):
            result.setdefault(split, {})[row["id"]] = row
    return result


def _card_body(repo: Path) -> str:
    """The card without the lines that name the folder or the build's date and duration."""
    text = (repo / "README.md").read_text().replace(f'"{repo.name}"', '"REPO"')
    return "\n".join(line for line in text.splitlines() if not line.startswith("Built "))


def _assert_same_repo(built: Path, piped: Path) -> None:
    assert _file_hashes(piped) == _file_hashes(built), "the same shard files, byte for byte"
    rows_built, rows_piped = _rows_by_split(built), _rows_by_split(piped)
    assert rows_piped.keys() == rows_built.keys()
    for split, rows in rows_built.items():
        assert list(rows_piped[split]) == list(rows), f"{split}: same ids in the same order"
        for row_id, row in rows.items():
            other = rows_piped[split][row_id]
            assert json.dumps(other, sort_keys=True, default=repr) == json.dumps(row, sort_keys=True, default=repr)
    assert read_card_yaml(piped) == read_card_yaml(built), "card configs, features and split sizes"
    assert _card_body(piped) == _card_body(built)
    info_built, info_piped = read_build_info(built), read_build_info(piped)
    for key in ("rows_written", "rejected", "features", "shards_per_split", "shard_bytes_target", "completed"):
        assert info_piped[key] == info_built[key], key
    assert info_piped["pipeline"]["engine"] == "datatrove"
    assert check_repo(piped) == []


def _fixture_sources() -> list[FixtureSource]:
    return [
        FixtureSource(num_clips=30, seed=3, corrupt="4:nan+17:image"),
        FixtureSource(num_clips=14, seed=5, domain="wild", source_name="fixture_b"),
        # the first 6 rows of the first source again: duplicate ids found across tasks, dropped like the builder
        FixtureSource(num_clips=6, seed=3),
    ]


def test_pipeline_equals_builder_with_rejects_and_duplicates_across_tasks(tmp_path: Path) -> None:
    built = tmp_path / "built"
    report = build_unihand(built, _fixture_sources(), progress=False, on_error="skip", **LAYOUT)
    assert report.rejected == {"motion": 1, "first_frame": 1, "id": 5}, "copy of row 4 is new"
    piped = tmp_path / "piped"
    tasks = plan_tasks(_fixture_sources(), units_per_task=7)
    assert len(tasks) == 5 + 2 + 1, "one task per 7 clips of each splittable source"
    build_with_datatrove(
        piped, _fixture_sources(), workers=1, units_per_task=7, on_error="skip", progress=False, **LAYOUT
    )
    _assert_same_repo(built, piped)
    assert len({path.name.split("-")[0] for path in piped.glob("data/lab/*.parquet")}) == 2, "train + test_lab"
    assert completed_tasks(default_work_dir(piped)) == list(range(len(tasks)))
    assert not list((default_work_dir(piped) / "staging").glob("*/*.parquet")), "staged rows removed when done"


def test_synthetic_source_over_two_worker_processes_equals_builder(tmp_path: Path) -> None:
    pytest.importorskip("mujoco", reason="the procedural hand world needs MuJoCo (the `world` extra)")
    from dataset_scripts.sources.synthetic import SyntheticSource

    def sources() -> list[SyntheticSource]:
        return [
            SyntheticSource(domain="lab", split="train", num_clips=5, seed=1, image_size=64),
            SyntheticSource(domain="wild", split="train", num_clips=4, seed=2, image_size=64),
            SyntheticSource(domain="wild", split="test_wild", num_clips=2, seed=3, image_size=64),
        ]

    built = tmp_path / "built"
    build_unihand(built, sources(), progress=False, preview=False, shard_bytes="100KB")
    piped = tmp_path / "piped"
    build_with_datatrove(
        piped, sources(), workers=2, units_per_task=2, progress=False, preview=False, shard_bytes="100KB"
    )
    _assert_same_repo(built, piped)


class FlakySource(FixtureSource):
    """A fixture source that records every range of clips it makes, and fails at clip `fail_at` while the file
    `fail_flag` exists (a task stopped half-way: a crash, a pre-empted Slurm job)."""

    def __init__(self, log_file: str, fail_flag: str, fail_at: int, **options: Any) -> None:
        super().__init__(**options)
        self.log_file, self.fail_flag, self.fail_at = log_file, fail_flag, fail_at

    def iter_unit_rows(self, start: int, stop: int) -> Iterator[dict[str, Any]]:
        with open(self.log_file, "a") as log:
            log.write(f"{start}-{stop}\n")
        for index in range(start, min(stop, self.num_clips)):
            if index == self.fail_at and os.path.exists(self.fail_flag):
                raise RuntimeError("task stopped")
            yield self.make_row(index)


def test_stopped_run_resumes_without_redoing_finished_tasks(tmp_path: Path) -> None:
    log_file, fail_flag = tmp_path / "made.txt", tmp_path / "fail"
    fail_flag.touch()

    def sources() -> list[FlakySource]:
        return [FlakySource(str(log_file), str(fail_flag), fail_at=12, num_clips=20, seed=7)]

    output = tmp_path / "repo"
    work = default_work_dir(output)
    with pytest.raises(RuntimeError, match="task stopped"):
        build_with_datatrove(output, sources(), workers=1, units_per_task=5, progress=False, **LAYOUT)
    assert completed_tasks(work) == [0, 1], "tasks before the stopped one finished; it and the rest did not"
    assert not (output / "README.md").exists() and not list(output.glob("data/*/*.parquet"))
    markers = {rank: (work / "1_stage_rows" / "completions" / f"{rank:05d}").stat().st_mtime_ns for rank in (0, 1)}
    staged = {path: path.stat().st_mtime_ns for path in (work / "staging").glob("0000[01]/*.parquet")}
    assert staged

    with pytest.raises(FileExistsError, match="different build"):  # another slicing must not reuse these tasks
        build_with_datatrove(output, sources(), workers=1, units_per_task=4, progress=False, **LAYOUT)

    fail_flag.unlink()
    build_with_datatrove(output, sources(), workers=1, units_per_task=5, progress=False, keep_staging=True, **LAYOUT)
    assert log_file.read_text().split() == ["0-5", "5-10", "10-15", "10-15", "15-20"], "finished ranges made once"
    assert completed_tasks(work) == [0, 1, 2, 3]
    for rank, mtime in markers.items():
        assert (work / "1_stage_rows" / "completions" / f"{rank:05d}").stat().st_mtime_ns == mtime
    assert {path: path.stat().st_mtime_ns for path in staged} == staged, "staged rows of finished tasks kept"

    built = tmp_path / "built"
    build_unihand(built, [FixtureSource(num_clips=20, seed=7)], progress=False, **LAYOUT)
    _assert_same_repo(built, output)
    # A finished build run again does nothing.
    build_with_datatrove(output, sources(), workers=1, units_per_task=5, progress=False, **LAYOUT)
    assert log_file.read_text().split()[-1] == "15-20"


def test_bad_row_fails_its_task_with_row_and_field_named(tmp_path: Path) -> None:
    with pytest.raises(RowValidationError, match="motion") as caught:
        build_with_datatrove(
            tmp_path / "repo", [FixtureSource(num_clips=8, seed=1, corrupt="5:nan")], workers=1, progress=False
        )
    assert caught.value.row_id.endswith("000005") and caught.value.field == "motion"


def test_cli_build_datatrove_dry_run_build_resume_and_info(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "mix"
    specs = ["--source", "fixture:num_clips=12,seed=2", "--source", "fixture:num_clips=6,seed=4,domain=wild"]
    base = ["--plugin", PLUGIN, "build-datatrove", "--output", str(output), *specs, "--units-per-task", "5"]
    assert cli.main([*base, "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("5 stage-1 tasks (local executor") and "source 1 (fixture) units 5-5" in printed
    options = ["--workers", "1", "--no-progress", "--no-preview", "--shard-size", "100KB"]
    assert cli.main([*base, *options]) == 0
    info = json.loads((output / BUILD_INFO_FILE).read_text())
    assert info["rows_written"] == 18 and "build-datatrove --output" in info["command"]
    assert info["pipeline"] | {"work_dir": None} == {
        "engine": "datatrove",
        "executor": "local",
        "tasks": 5,
        "work_dir": None,
        "task_seconds": info["pipeline"]["task_seconds"],
    }
    assert cli.main([*base, *options]) == 0, "a finished build run again is a no-op"
    assert cli.main([*base, *options[:-2], "--shard-size", "1MB"]) == 1, (
        "other options are refused without --overwrite"
    )
    assert cli.main(["info", str(output)]) == 0
    assert "card check: ok" in capsys.readouterr().out
    bad = ["--plugin", PLUGIN, "build-datatrove", "--output", str(tmp_path / "bad")]
    assert cli.main([*bad, "--source", "fixture:num_clips=4,corrupt=2:shape", *options]) == 2


def test_video_source_one_video_per_task_keeps_the_builders_ids(tmp_path: Path) -> None:
    """Video row ids count rows across the whole source; each task numbers its videos' rows from 0 and the merge
    renumbers them (`ClipSource.global_row_id`), so the ids and shards are the builder's."""
    pytest.importorskip("av", reason="PyAV is needed to write the test videos")
    from dataset_scripts.sources.video import VideoSource
    from tests.test_video_ingest import write_video

    folder = tmp_path / "videos"
    folder.mkdir()
    for name, frames in (("a.mp4", 90), ("b.mp4", 60), ("c.mp4", 75)):
        write_video(folder / name, frames, fps=30, size=(96, 64))

    def sources() -> list[VideoSource]:
        return [VideoSource(folder, tracker="none", progress=False, max_clip_seconds=2.0)]

    assert len(plan_tasks(sources())) == 3, "one task per video by default"
    built = tmp_path / "built"
    build_unihand(built, sources(), progress=False, preview=False)
    piped = tmp_path / "piped"
    build_with_datatrove(piped, sources(), workers=1, progress=False, preview=False)
    _assert_same_repo(built, piped)
    ids = sorted(row_id for rows in _rows_by_split(piped).values() for row_id in rows)
    assert len(ids) > 3 and ids[-1].endswith(f"{len(ids) - 1:06d}")


def test_lab_converter_one_sequence_per_task_keeps_the_builders_ids(tmp_path: Path) -> None:
    """Lab converters count rows across sequences in their ids too; split per sequence, renumbered at the merge."""
    from dataset_scripts.sources.h2o import H2OConverter
    from tests.test_converters import TAKES, write_take

    root = tmp_path / "h2o"
    root.mkdir()
    for take in TAKES:
        write_take(root, take, "cam4")
    write_take(root, "subject1/h1/0", "cam0", with_actions=False)

    def sources() -> list[H2OConverter]:
        return [H2OConverter(root, progress=False, test_fraction=0.5)]

    sequences = sources()[0].num_units()
    assert len(plan_tasks(sources(), units_per_task=1)) == sequences > 1
    built = tmp_path / "built"
    build_unihand(built, sources(), progress=False, preview=False)
    piped = tmp_path / "piped"
    build_with_datatrove(piped, sources(), workers=1, units_per_task=1, progress=False, preview=False)
    _assert_same_repo(built, piped)


def test_slurm_executors_are_chained_with_the_cluster_settings(tmp_path: Path) -> None:
    """The Slurm configuration of the README: three job arrays, each depending on the one before; nothing is
    submitted until `.run()` (no sbatch here)."""
    from dataset_scripts.datatrove_pipeline import prepare_pipeline

    settings = {"partition": "cpu", "time": "02:00:00", "cpus_per_task": 2, "mem_per_cpu_gb": 4, "job_name": "uhm"}
    finish = prepare_pipeline(
        tmp_path / "repo",
        [FixtureSource(num_clips=70, seed=1)],
        executor="slurm",
        workers=100,
        executor_options=settings,
    )
    merge = finish.depends
    stage = merge.depends
    assert (stage.world_size, merge.world_size, finish.world_size) == (3, 4, 1)
    assert stage.depends is None and stage.partition == "cpu" and stage.cpus_per_task == 2
    assert stage.logging_dir.path.endswith("repo.datatrove/1_stage_rows")


def test_hooks_run_in_the_tasks_and_give_the_builders_columns(tmp_path: Path) -> None:
    """Hooks travel as their options and are loaded in each task; with task slices aligned to the hook batches
    (the encoders see the same batches), the precomputed columns are the builder's byte for byte."""
    import torch

    from dataset_scripts.builder import MotionTokenHook, SslFeatureHook
    from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
    from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
    from tests.conftest import TINY_TOKENIZER
    from tests.fixtures.tiny_jala import save_tiny_dinov3

    torch.manual_seed(0)
    encoder_dir = save_tiny_dinov3(tmp_path / "dinov3", num_register_tokens=2)
    tokenizer_dir = tmp_path / "tokenizer"
    JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER)).eval().save_pretrained(tokenizer_dir)
    ssl_options = {"encoder_dir": str(encoder_dir), "token_selection": "all"}

    built = tmp_path / "built"
    hooks = {"ssl_hook": SslFeatureHook(**ssl_options), "token_hook": MotionTokenHook(tokenizer_dir)}
    build_unihand(built, [FixtureSource(num_clips=12, seed=8)], hook_batch_rows=4, progress=False, **hooks)
    piped = tmp_path / "piped"
    build_with_datatrove(
        piped,
        [FixtureSource(num_clips=12, seed=8)],
        workers=1,
        units_per_task=4,
        hook_batch_rows=4,
        ssl_encoder=ssl_options,
        motion_tokenizer={"tokenizer_dir": str(tokenizer_dir)},
        progress=False,
    )
    _assert_same_repo(built, piped)
    for key in ("ssl_encoder", "motion_tokenizer"):
        assert read_build_info(piped)[key] == read_build_info(built)[key]
