"""UniHand-Mix builder, card and CLI: what is written is what was given, bad rows never reach a shard, the card
lets `load_dataset` read the repo with no loading script, and the CLI works end to end on the fixture source."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from dataset_scripts import cli
from dataset_scripts.builder import BUILD_INFO_FILE, MotionTokenHook, SslFeatureHook, build_unihand, parse_size
from dataset_scripts.card import check_repo, collect_stats, read_card_yaml
from dataset_scripts.collator import UniHandCollator
from dataset_scripts.schema import COLUMN_DOCS, OPTIONAL_COLUMN_DOCS, RowValidationError, num_chunks, validate_row
from dataset_scripts.streaming import UniHandStream, read_features, table_to_rows
from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from tests.conftest import REPO_ROOT, TINY_TOKENIZER
from tests.fixtures.unihand_factory import CORRUPTIONS, FixtureSource, ListSource, cached_repo

PLUGIN = "tests.fixtures.unihand_factory"


def _source_rows(**options) -> dict[str, dict]:
    return {row["id"]: row for row in FixtureSource(**options).iter_rows()}


def _decode(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"))


def _repo_rows(repo: Path) -> list[dict]:
    return [row for path in sorted(repo.glob("data/*/*.parquet")) for row in table_to_rows(pq.read_table(path))]


@pytest.fixture(autouse=True)
def _no_parquet_shutdown_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets 5.2 sleeps 5 s at the end of every multi-shard parquet stream (a guard for apache/arrow#45214,
    which its own reader code treats as fixed after pyarrow 24; we run 26). Tests iterate many short streams."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory) -> Path:
    return cached_repo(
        tmp_path_factory, "tiny", [FixtureSource(num_clips=40, seed=3)], shard_bytes="150KB", row_group_rows=4
    )


# ------------------------------------------------------------------------------------------------ round trip


def test_streaming_and_non_streaming_read_back_round_trips(tiny_repo: Path, tmp_path: Path) -> None:
    expected = _source_rows(num_clips=40, seed=3)
    seen = {}
    for split in ("train", "test_lab", "test_wild"):
        for row in datasets.load_dataset(str(tiny_repo), "all", split=split, streaming=True):
            assert row["id"].split("-")[2] == split
            seen[row["id"]] = row
    assert set(seen) == set(expected), "every source row is readable through the default config"
    for row_id, row in seen.items():
        source = expected[row_id]
        if source["motion"] is None:
            assert row["motion"] is None, f"{row_id}: unlabelled motion must stay None"
        else:
            np.testing.assert_array_equal(np.asarray(row["motion"], np.float32), source["motion"])
        np.testing.assert_array_equal(_decode(row["first_frame"]), _decode(source["first_frame"]))
        assert len(row["boundary_frames"]) == num_chunks(source["num_frames"]) + 1
        np.testing.assert_array_equal(_decode(row["boundary_frames"][-1]), _decode(source["boundary_frames"][-1]))
        for key in ("instruction", "task_type", "hands_present", "labelled", "label_source", "num_frames", "scene"):
            assert row[key] == source[key], (row_id, key)
        assert row["label_confidence"] == pytest.approx(source["label_confidence"], abs=1e-6)

    loaded = datasets.load_dataset(str(tiny_repo), "wild", cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "test_wild"}
    for row in loaded["train"]:
        source = expected[row["id"]]
        assert row["domain"] == "wild"
        assert (row["motion"] is None) == (source["motion"] is None)
        if source["motion"] is not None:
            np.testing.assert_array_equal(np.asarray(row["motion"], np.float32), source["motion"])


def test_shards_roll_over_and_are_named_and_sized(tiny_repo: Path) -> None:
    stats = collect_stats(tiny_repo)
    assert len(stats.shards) > 4, "a 150 KB target must split the build into several shards"
    for domain, split in {(s.domain, s.split) for s in stats.shards}:
        names = sorted(s.path for s in stats.shards if s.domain == domain and s.split == split)
        assert names == [f"data/{domain}/{split}-{i:05d}.parquet" for i in range(len(names))]
    # A shard closes before a row group would overflow it (the size of a row group on disk is estimated, hence the
    # 10 % slack), so only a shard holding a single row group may exceed the target.
    for shard in stats.shards:
        assert shard.bytes < 1.1 * parse_size("150KB") or shard.row_groups == 1, shard
    assert not list(tiny_repo.rglob("*.incomplete"))
    assert sum(s.rows for s in stats.shards) == 40


def test_card_configs_parse_and_point_at_existing_files(tiny_repo: Path) -> None:
    assert check_repo(tiny_repo) == []
    front = read_card_yaml(tiny_repo)
    configs = {entry["config_name"]: entry for entry in front["configs"]}
    assert set(configs) == {"lab", "wild", "all"} and configs["all"].get("default") is True
    assert {f["split"] for f in configs["lab"]["data_files"]} == {"train", "test_lab"}
    assert {f["split"] for f in configs["wild"]["data_files"]} == {"train", "test_wild"}
    for entry in configs.values():
        for data_file in entry["data_files"]:
            paths = data_file["path"] if isinstance(data_file["path"], list) else [data_file["path"]]
            assert all(list(tiny_repo.glob(path)) for path in paths), data_file
    readme = (tiny_repo / "README.md").read_text()
    for column in COLUMN_DOCS:
        assert f"`{column}`" in readme, f"the card must document column {column}"
    assert "preview.png" in readme and (tiny_repo / "preview.png").exists()
    stats = collect_stats(tiny_repo)
    assert f"{stats.total_rows} clips" in readme
    builder = datasets.load_dataset_builder(str(tiny_repo), "lab")
    assert builder.config.name == "lab"

    broken = tiny_repo.parent / "broken_card"
    shutil.copytree(tiny_repo, broken)
    for path in broken.glob("data/wild/test_wild-*.parquet"):
        path.unlink()
    problems = check_repo(broken)
    assert any("test_wild" in problem for problem in problems), problems


# ------------------------------------------------------------------------------------------------ rejection


@pytest.mark.parametrize(("kind", "bad_index"), [("image", 9), ("nan", 10), ("shape", 7), ("boundary_image", 5)])
def test_invalid_row_is_rejected_naming_row_and_field_and_earlier_rows_survive(
    tmp_path: Path, kind: str, bad_index: int
) -> None:
    source = FixtureSource(num_clips=16, seed=5, domain="lab", split="train", corrupt=f"{bad_index}:{kind}")
    bad_id = source.make_row(bad_index)["id"]
    with pytest.raises(RowValidationError) as caught:
        build_unihand(tmp_path, [source], shard_bytes="60KB", row_group_rows=3, progress=False)
    assert caught.value.row_id == bad_id
    assert caught.value.field == CORRUPTIONS[kind]
    assert bad_id in str(caught.value) and CORRUPTIONS[kind] in str(caught.value)

    written = {row["id"] for row in datasets.load_dataset(str(tmp_path), "all", split="train", streaming=True)}
    assert written == {source.make_row(i)["id"] for i in range(bad_index)}, "rows before the bad one survive"
    assert len(list(tmp_path.glob("data/lab/*.parquet"))) >= 2, "closed shards and the open one are both on disk"
    assert check_repo(tmp_path) == []
    info = json.loads((tmp_path / BUILD_INFO_FILE).read_text())
    assert info["completed"] is False
    assert "stopped early" in (tmp_path / "README.md").read_text()


class _PlaceholderTokenHook:
    """A motion-token hook without a model (all ids -100): exercises hook batching without loading anything."""

    def __call__(self, rows: list[dict]) -> None:
        for row in rows:
            row["motion_tokens"] = np.full((num_chunks(row["num_frames"]), 2, 128), -100, np.int16)

    def describe(self) -> dict:
        return {"tokenizer": "placeholder", "codebook_size": 0, "tokens_per_chunk": 128}


def test_rows_waiting_for_a_hook_batch_survive_a_bad_row(tmp_path: Path) -> None:
    source = FixtureSource(num_clips=10, seed=7, domain="wild", split="train", corrupt="6:nan")
    with pytest.raises(RowValidationError, match="motion"):
        build_unihand(tmp_path, [source], token_hook=_PlaceholderTokenHook(), hook_batch_rows=4, progress=False)
    rows = _repo_rows(tmp_path)
    assert sorted(row["id"] for row in rows) == sorted(source.make_row(i)["id"] for i in range(6))
    assert all(row["motion_tokens"].shape == (num_chunks(row["num_frames"]), 2, 128) for row in rows)


def test_motion_tokens_take_the_builds_tokens_per_chunk(tmp_path: Path) -> None:
    """K of `motion_tokens` (N, 2, K) is the token hook's (the tokenizer config's), not a fixed 128: the schema,
    the rows, `validate_row` and the collator all follow it."""

    class SmallTokenHook(_PlaceholderTokenHook):
        def __call__(self, rows: list[dict]) -> None:
            for row in rows:
                row["motion_tokens"] = np.full((num_chunks(row["num_frames"]), 2, 64), 7, np.int16)

        def describe(self) -> dict:
            return {**super().describe(), "tokens_per_chunk": 64}

    build_unihand(tmp_path, [FixtureSource(num_clips=3, seed=2)], token_hook=SmallTokenHook(), progress=False)
    assert read_features(next(tmp_path.glob("data/*/*.parquet")))["motion_tokens"].shape == (None, 2, 64)
    rows = _repo_rows(tmp_path)
    assert all(row["motion_tokens"].shape == (num_chunks(row["num_frames"]), 2, 64) for row in rows)
    assert UniHandCollator(image_size=16, boundary="none")(rows)["motion_tokens"].shape[-1] == 64
    validate_row(rows[0], motion_tokens_per_chunk=64)
    with pytest.raises(RowValidationError, match=r"expected \(\d+, 2, 128\)"):
        validate_row(rows[0], motion_tokens_per_chunk=128)


def test_skip_mode_counts_and_lists_rejected_rows(tmp_path: Path) -> None:
    source = FixtureSource(num_clips=12, seed=6, corrupt="2:nan+5:image+8:instruction")
    report = build_unihand(tmp_path, [source], on_error="skip", progress=False, preview=False)
    assert report.total_rows == 9
    assert dict(report.rejected) == {"motion": 1, "first_frame": 1, "instruction": 1}
    info = json.loads((tmp_path / BUILD_INFO_FILE).read_text())
    assert info["rejected"]["count"] == 3 and info["completed"] is True
    assert {r["id"] for r in info["rejected"]["rows"]} == {source.make_row(i)["id"] for i in (2, 5, 8)}
    assert "3 source rows were rejected" in (tmp_path / "README.md").read_text()


def test_duplicate_ids_wrong_split_and_existing_output_are_refused(tmp_path: Path) -> None:
    row = FixtureSource(num_clips=1, domain="wild", split="train").make_row(0)
    with pytest.raises(RowValidationError) as caught:
        build_unihand(tmp_path / "dup", [ListSource([row, row])], progress=False, preview=False)
    assert caught.value.field == "id"
    with pytest.raises(RowValidationError) as caught:
        build_unihand(tmp_path / "split", [ListSource([{**row, "split": "test_lab"}])], progress=False)
    assert caught.value.field == "split"
    build_unihand(tmp_path / "once", [ListSource([row])], progress=False, preview=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        build_unihand(tmp_path / "once", [ListSource([row])], progress=False)
    build_unihand(tmp_path / "once", [ListSource([row])], progress=False, preview=False, overwrite=True)


# ------------------------------------------------------------------------------------------------ hooks


def test_precomputed_ssl_features_and_motion_tokens_hooks(tmp_path: Path) -> None:
    from transformers import DINOv3ViTModel

    from tests.fixtures.tiny_jala import save_tiny_dinov3

    torch.manual_seed(0)
    encoder_dir = save_tiny_dinov3(tmp_path / "dinov3", num_register_tokens=2)
    tokenizer_dir = tmp_path / "tokenizer"
    JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER)).eval().save_pretrained(tokenizer_dir)

    ssl_hook, token_hook = SslFeatureHook(encoder_dir, token_selection="all"), MotionTokenHook(tokenizer_dir)
    assert ssl_hook.feature_shape == (1 + 2 + 16, 32)
    repo = tmp_path / "repo"
    source = FixtureSource(num_clips=10, seed=8)
    build_unihand(repo, [source], ssl_hook=ssl_hook, token_hook=token_hook, hook_batch_rows=4, progress=False)

    rows = {row["id"]: row for row in _repo_rows(repo)}
    assert len(rows) == 10
    encoder = DINOv3ViTModel.from_pretrained(encoder_dir).eval()
    tokenizer = JalaMotionTokenizer.from_pretrained(tokenizer_dir).eval()
    for row in rows.values():
        chunks = num_chunks(row["num_frames"])
        assert row["ssl_features"].shape == (chunks + 1, 19, 32) and row["ssl_features"].dtype == np.float16
        assert row["motion_tokens"].shape == (chunks, 2, 128)
        if not row["labelled"]:
            assert (row["motion_tokens"] == -100).all()
            continue
        ids = tokenizer.encode(
            torch.tensor(row["motion"]).transpose(0, 1)[None],
            hand_mask=torch.tensor([row["hands_present"]]),
        ).ids[0]
        np.testing.assert_array_equal(row["motion_tokens"], ids.permute(1, 0, 2).numpy())
        for hand, present in enumerate(row["hands_present"]):
            assert (row["motion_tokens"][:, hand] == -100).all() != present

    # Features equal a direct encoder pass over the decoded boundary frames (same resize / normalisation).
    row = next(iter(rows.values()))
    pixels = torch.stack(
        [
            (
                torch.tensor(
                    np.array(Image.open(io.BytesIO(f["bytes"])).convert("RGB").resize((32, 32), Image.BILINEAR))
                )
                .permute(2, 0, 1)
                .float()
                / 255.0
                - torch.tensor([0.485, 0.456, 0.406])[:, None, None]
            )
            / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
            for f in row["boundary_frames"]
        ]
    )
    with torch.no_grad():
        direct = encoder(pixel_values=pixels).last_hidden_state.numpy()
    np.testing.assert_allclose(row["ssl_features"].astype(np.float32), direct, atol=2e-2, rtol=1e-2)

    readme = (repo / "README.md").read_text()
    assert "DINOv3ViTModel" in readme and str(tokenizer_dir) in readme
    for column in OPTIONAL_COLUMN_DOCS:
        assert f"`{column}`" in readme
    batch = UniHandCollator(image_size=32)(list(UniHandStream(repo, infinite=False, shuffle_buffer_size=1)))
    assert batch["ssl_features"].dtype == torch.float16 and "boundary_frames" not in batch
    assert batch["motion_tokens"].dtype == torch.long


# ------------------------------------------------------------------------------------------------ CLI


def _run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dataset_scripts", "--plugin", PLUGIN, *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_cli_build_info_preview_on_fixture_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    repo = tmp_path / "repo"
    _run_cli(
        "build",
        "--output",
        str(repo),
        "--source",
        "fixture:num_clips=14,seed=2,domain=lab,max_seconds=2.5",
        "--source",
        "fixture:num_clips=10,seed=4,domain=wild,corrupt=3:nan,source_name=fixture_b",
        "--shard-size",
        "200KB",
        "--on-error",
        "skip",
        "--no-progress",
    )
    assert check_repo(repo) == []
    stats = collect_stats(repo)
    assert stats.total_rows == 23
    info = json.loads((repo / BUILD_INFO_FILE).read_text())
    assert info["rejected"]["by_field"] == {"motion": 1}
    assert "--source fixture:num_clips=14" in info["command"]

    text = _run_cli("info", str(repo)).stdout
    assert "Configs and splits" in text and "fixture_b" in text and "card check: ok" in text
    assert "rejected at build: 1" in text
    assert cli.main(["info", str(repo), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 23 and report["problems"] == []
    lab_rows = sum(line["rows"] for line in report["configs"] if line["config"] == "lab")
    assert lab_rows == 14
    assert {line["source"] for line in report["sources"]} == {"fixture", "fixture_b"}

    png = tmp_path / "sheet.png"
    _run_cli("preview", str(repo), "--output", str(png), "--clips", "2", "--frames", "3", "--thumb", "64")
    with Image.open(png) as image:
        assert image.width == 6 + 3 * (64 + 6) and image.height > 4 * 64


def test_cli_source_parsing_help_and_default_recipe(capsys: pytest.CaptureFixture) -> None:
    sources = cli.load_sources([PLUGIN])
    source = cli.parse_source_spec("fixture:num_clips=3,ssl_feature_shape=4x8,max_seconds=1.5,domain=wild", sources)
    assert (source.num_clips, source.ssl_feature_shape, source.max_frames, source.domain) == (3, (4, 8), 22, "wild")
    with pytest.raises(SystemExit, match="no option 'clips'.*num_clips"):
        cli.parse_source_spec("fixture:clips=3", sources)
    with pytest.raises(SystemExit, match="option 'num_clips'.*'many'"):
        cli.parse_source_spec("fixture:num_clips=many", sources)
    with pytest.raises(SystemExit, match="unknown source 'nope'"):
        cli.parse_source_spec("nope:x=1", sources)
    with pytest.raises(SystemExit):
        cli.main(["--plugin", PLUGIN, "build", "--help"])
    help_text = capsys.readouterr().out
    assert "fixture(num_clips: 'int' = 24" in help_text and "Fast synthetic rows for tests" in help_text

    specs = cli.default_recipe(num_clips=2000, hands_folder=REPO_ROOT)
    counts = [int(spec.split("num_clips=")[1].split(",")[0]) for spec in specs if "num_clips=" in spec]
    assert sum(counts) == 2000 and specs[-1] == f"video:root={REPO_ROOT}"
    assert (
        cli.main(
            [
                "--plugin",
                PLUGIN,
                "build-default",
                "--output",
                "x",
                "--synthetic-source",
                "fixture",
                "--no-video",
                "--dry-run",
                "--num-clips",
                "40",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.count("--source fixture:domain=") == 4 and "seed=" in printed
