"""The self-supervised frame encoder: its training loop, its Hub folder, its use in pretraining, the one feature
function shared by the model and the dataset builder, and the linear probe that measures it."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoModel, DINOv3ViTModel, ViTImageProcessorPil

from dataset_scripts.builder import SslFeatureHook, build_unihand
from dataset_scripts.collator import UniHandCollator
from dataset_scripts.schema import num_chunks
from dataset_scripts.streaming import UniHandStream
from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from modeling_jala.hand_jala import D162_DIM, JOINTS_XYZ, WRIST_TRANSL
from modeling_jala.modeling_jala import JalaModel
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from modeling_jala.ssl_features_jala import encode_ssl_frames, pool_patch_grid, select_ssl_tokens, ssl_image_settings
from modeling_jala.strict_loading_jala import strict_from_pretrained
from tests.conftest import TINY_TOKENIZER
from tests.fixtures.tiny_jala import save_tiny_dinov3
from tests.fixtures.unihand_factory import FixtureSource
from trainers import pretrain, train_ssl_encoder
from trainers.presets import build_processor, build_word_tokenizer, jala_structure
from trainers.pretrain_collator import JalaPretrainCollator
from trainers.ssl_probe import (
    TRAIN_LOO,
    ProbeSplit,
    evaluate_probe,
    first_frame_targets,
    fit_ridge,
    probe_encoders,
)

#: A fast encoder for tests: 32 px frames, 8 px patches (a 4x4 grid, as the tiny structure's 64 / 16).
FAST_ENCODER = ["--hidden_size=32", "--num_heads=2", "--num_layers=1", "--image_size=32", "--patch_size=8"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 fixture clips (lab + wild, labelled and not), 48 px frames with the projected joints drawn as dots."""
    path = tmp_path_factory.mktemp("ssl_repo")
    build_unihand(path, [FixtureSource(num_clips=24, seed=5, test_fraction=0.25)], progress=False, preview=False)
    return path


@pytest.fixture(scope="module")
def trained(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An encoder trained for 40 steps through `main(argv)`, and its report."""
    output = tmp_path_factory.mktemp("ssl_encoder")
    report = train_ssl_encoder.main(
        [
            f"--dataset={repo}",
            f"--output_dir={output}",
            "--max_steps=40",
            "--batch_size=32",
            "--learning_rate=2e-3",
            "--log_every=1",
            "--seed=0",
            *FAST_ENCODER,
        ]
    )
    return output, report


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    torch.manual_seed(0)
    JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER)).eval().save_pretrained(path)
    return path


# ------------------------------------------------------------------------------------------------ training


def test_training_loss_decreases_without_collapse(trained: tuple[Path, dict]) -> None:
    _, report = trained
    history = report["history"]
    assert report["steps"] == 40 and len(history) == 40
    first = np.mean([record["loss"] for record in history[:5]])
    last = np.mean([record["loss"] for record in history[-5:]])
    assert last < 0.8 * first, (first, last)
    # A collapsed teacher gives (near) constant features: per-dimension std -> 0, effective rank -> 1.
    assert history[-1]["feature_std"] > 0.3, history[-1]
    assert history[-1]["effective_rank"] > 4.0, history[-1]
    for record in history:
        assert all(np.isfinite(value) for value in record.values() if isinstance(value, float)), record


def test_training_reads_no_labels(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The frame bank is built from rows without the `motion` column (the objective cannot see labels)."""
    seen_columns: list[set[str]] = []
    original = UniHandCollator.__call__

    def spy(self: UniHandCollator, rows: list[dict]) -> dict:
        seen_columns.extend(set(row) for row in rows)
        return original(self, rows)

    monkeypatch.setattr(UniHandCollator, "__call__", spy)
    bank = train_ssl_encoder.load_frame_bank([str(repo)], size=24, progress=False)
    rows = list(UniHandStream(repo, split="train", infinite=False, shuffle=False, columns=["num_frames"]))
    assert bank.shape == (sum(num_chunks(row["num_frames"]) + 1 for row in rows), 3, 24, 24)
    assert bank.dtype == torch.uint8
    assert seen_columns and all("motion" not in columns for columns in seen_columns)


def test_bad_arguments_name_the_flag(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--patch_size"):
        train_ssl_encoder.main([f"--dataset={repo}", f"--output_dir={tmp_path}", "--image_size=30", "--patch_size=8"])
    with pytest.raises(ValueError, match="--dataset is required"):
        train_ssl_encoder.main([f"--output_dir={tmp_path}", "--max_steps=1", *FAST_ENCODER])


def test_views_share_geometry_and_masks_keep_a_visible_patch() -> None:
    args = train_ssl_encoder.SslEncoderArguments(
        dataset=["unused"],
        image_size=16,
        patch_size=8,
        hidden_size=32,
        num_heads=2,
        color_jitter=0.0,
        grayscale_probability=0.0,
    )
    frames = torch.randint(0, 256, (6, 3, 24, 24), dtype=torch.uint8)
    teacher, student = train_ssl_encoder.make_views(frames, args, torch.Generator().manual_seed(0))
    assert teacher.shape == (6, 3, 16, 16)
    torch.testing.assert_close(teacher, student)  # no jitter: one crop, identical views
    masks = train_ssl_encoder.block_masks(200, 4, 0.3, 0.6, np.random.default_rng(0))
    counts = masks.sum(1)
    assert counts.min() >= 1 and counts.max() <= 15
    assert 0.3 * 16 - 1 <= counts.float().mean() <= 0.6 * 16 + 2


# ------------------------------------------------------------------------------------------------ Hub folder


def test_saved_folder_loads_strictly_and_a_missing_tensor_fails(trained: tuple[Path, dict], tmp_path: Path) -> None:
    folder, _ = trained
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md"} <= {
        path.name for path in folder.iterdir()
    }
    model = strict_from_pretrained(AutoModel, folder)
    assert isinstance(model, DINOv3ViTModel) and model.config.image_size == 32
    saved = load_file(folder / "model.safetensors")  # DINOv3's checkpoint names: `layer.*` for `model.layer.*`
    state = model.state_dict()
    assert len(saved) == len(state)
    for name, tensor in state.items():
        torch.testing.assert_close(tensor, saved[name.removeprefix("model.")], rtol=0, atol=0, msg=name)
    assert ssl_image_settings(folder) == {
        "image_size": 32,
        "image_mean": pytest.approx([0.485, 0.456, 0.406]),
        "image_std": pytest.approx([0.229, 0.224, 0.225]),
    }

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    dropped = "layer.0.mlp.up_proj.weight"
    save_file(
        {k: v for k, v in saved.items() if k != dropped}, broken / "model.safetensors", metadata={"format": "pt"}
    )
    with pytest.raises(ValueError, match="missing keys"):
        strict_from_pretrained(AutoModel, broken)
    with pytest.raises(ValueError, match="missing keys"):
        pretrain.load_ssl_encoder(str(broken))


# ------------------------------------------------------------------------------------------------ pretraining


def test_pretraining_takes_the_encoder_frozen(trained: tuple[Path, dict], repo: Path, tokenizer_dir: Path) -> None:
    folder, _ = trained
    model_args = pretrain.ModelArguments(
        ssl_encoder_name_or_path=str(folder), motion_tokenizer=str(tokenizer_dir), structure="tiny"
    )
    model, processor = pretrain.build_model_and_processor(model_args, pretrain.DataArguments(dataset=[str(repo)]))
    encoder = model.model.ssl_encoder
    reference = strict_from_pretrained(AutoModel, folder).state_dict()
    assert model.config.ssl_encoder_config.image_size == 32 and model.config.ssl_encoder_name_or_path == str(folder)
    assert processor.ssl_image_processor.size == {"height": 32, "width": 32}
    assert list(processor.ssl_image_processor.image_mean) == pytest.approx([0.485, 0.456, 0.406])
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0, msg=name)
    assert not any(parameter.requires_grad for parameter in encoder.parameters())

    model.train()
    assert model.training and not encoder.training
    size = processor.image_processor.size
    collator = JalaPretrainCollator(
        processor, UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=2)
    )
    rows = list(UniHandStream(repo, split="train", infinite=False, shuffle=False))[:4]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    loss = model(**collator(rows)).loss
    loss.backward()
    optimizer.step()
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(tensor, reference[name], rtol=0, atol=0, msg=name)
    assert any(parameter.grad is not None for parameter in model.model.lsp.parameters()), "nothing else trained"


def test_pretraining_refuses_a_processor_that_preprocesses_differently(
    trained: tuple[Path, dict], tmp_path: Path
) -> None:
    folder, _ = trained
    processor = build_processor(
        build_word_tokenizer(["pick up the red cup"]), image_size=112, ssl_image_size=64, image_seq_length=16
    )
    with pytest.raises(ValueError, match="--processor_name_or_path"):
        pretrain.check_ssl_processor(processor, ssl_image_settings(folder), str(folder))


# ------------------------------------------------------------------------------------------------ shared features


def test_token_selection_and_pooling() -> None:
    tokens = torch.arange(2 * (3 + 16) * 2, dtype=torch.float32).view(2, 19, 2)
    patches = tokens[:, 3:]
    torch.testing.assert_close(select_ssl_tokens(tokens, 3, "patches"), patches)
    torch.testing.assert_close(select_ssl_tokens(tokens, 3, "cls"), tokens[:, :1])
    pooled = select_ssl_tokens(tokens, 3, "patches", pool_grid=2)
    grid = patches.view(2, 4, 4, 2)
    expected = grid.view(2, 2, 2, 2, 2, 2).mean(dim=(2, 4)).reshape(2, 4, 2)  # 2x2 blocks of the 4x4 grid
    torch.testing.assert_close(pooled, expected)
    torch.testing.assert_close(select_ssl_tokens(tokens, 3, "all", 2), torch.cat([tokens[:, :3], expected], 1))
    torch.testing.assert_close(pool_patch_grid(patches, 4), patches)
    with pytest.raises(ValueError, match="finer than"):
        pool_patch_grid(patches, 5)
    with pytest.raises(ValueError, match="square patch grid"):
        pool_patch_grid(patches[:, :15], 2)
    with pytest.raises(ValueError, match="token_selection"):
        select_ssl_tokens(tokens, 3, "registers")  # type: ignore[arg-type]


def test_precomputed_features_equal_the_models_on_the_fly_features(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder_dir = save_tiny_dinov3(tmp_path / "encoder", num_register_tokens=2)
    image_processor = ViTImageProcessorPil(
        size={"height": 32, "width": 32}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]
    )
    image_processor.save_pretrained(encoder_dir)

    repo = tmp_path / "repo"
    hook = SslFeatureHook(encoder_dir, pool_grid=2)
    assert hook.feature_shape == (4, 32)  # patches only by default, as the model reads them
    build_unihand(repo, [FixtureSource(num_clips=3, seed=2)], ssl_hook=hook, progress=False, preview=False)
    row = next(iter(UniHandStream(repo, split="train", infinite=False, shuffle=False)))

    encoder = strict_from_pretrained(AutoModel, encoder_dir)
    jala_config = jala_structure(
        "tiny",
        vocab_size=16,
        image_token_id=3,
        tokenizer_config=JalaMotionTokenizerConfig(**TINY_TOKENIZER),
        ssl_encoder_config=encoder.config,
        ssl_pool_grid=2,
    )
    model = JalaModel(jala_config).eval()
    model.ssl_encoder.load_state_dict(encoder.state_dict(), strict=True)
    settings = ssl_image_settings(encoder_dir)
    processor = build_processor(
        build_word_tokenizer(["pick up the red cup"]),
        image_size=112,
        ssl_image_size=settings["image_size"],
        image_seq_length=16,
        ssl_image_mean=settings["image_mean"],
        ssl_image_std=settings["image_std"],
    )
    frames = [Image.open(io.BytesIO(frame["bytes"])).convert("RGB") for frame in row["boundary_frames"]]
    pixels = processor.ssl_image_processor(images=frames, return_tensors="pt")["pixel_values"]
    on_the_fly = model.ssl_features(pixels[None])[0]
    precomputed = torch.from_numpy(np.asarray(row["ssl_features"], dtype=np.float32))
    assert precomputed.shape == on_the_fly.shape == (len(frames), 4, 32)
    torch.testing.assert_close(precomputed, on_the_fly, atol=2e-2, rtol=1e-2)  # float16 storage
    # Both go through the same function; the model's prefix (CLS + 2 registers) is dropped.
    with torch.no_grad():
        torch.testing.assert_close(on_the_fly, encode_ssl_frames(encoder.eval(), pixels, "patches", 2))


# ------------------------------------------------------------------------------------------------ probe


def test_first_frame_targets_read_wrist_and_aperture() -> None:
    motion = np.zeros((3, 2, D162_DIM), np.float32)
    motion[0, 1, WRIST_TRANSL] = (0.1, -0.2, 0.5)
    joints = np.zeros((21, 3), np.float32)
    joints[4], joints[8] = (0.0, 0.0, 0.5), (0.03, 0.04, 0.5)  # thumb tip, index tip: 5 cm apart
    motion[0, 1, JOINTS_XYZ] = joints.reshape(-1)
    motion[1, 1, WRIST_TRANSL] = (9.0, 9.0, 9.0)  # later frames are ignored
    targets = first_frame_targets(motion)
    np.testing.assert_allclose(targets[1], [0.1, -0.2, 0.5, 0.05], atol=1e-6)
    np.testing.assert_allclose(targets[0], 0.0)


def test_ridge_probe_recovers_a_known_linear_map() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 20)) * rng.uniform(0.5, 3.0, size=20)
    weight = rng.normal(size=(20, 4))
    targets = features @ weight + np.array([0.1, -0.2, 0.5, 0.07])
    probe = fit_ridge(features[:200], targets[:200] + 1e-3 * rng.normal(size=(200, 4)))
    predicted = probe.predict(features[200:])
    np.testing.assert_allclose(predicted, targets[200:], atol=0.02)
    assert probe.alphas.max() < 1.0  # nearly noise-free data: the leave-one-out choice is a small penalty


def _split(name: str, features: np.ndarray, weight: np.ndarray, present: np.ndarray) -> ProbeSplit:
    """Targets that are an exact linear function of the features (one map per hand)."""
    targets = np.stack([features @ weight[hand] + 0.3 * hand for hand in range(2)], axis=1)
    return ProbeSplit(name, [None] * len(features), targets, present)  # type: ignore[list-item]


def test_probe_evaluation_recovers_a_linear_answer_and_the_mean_does_not() -> None:
    rng = np.random.default_rng(1)
    weight = rng.normal(scale=0.05, size=(2, 12, 4))
    train_x, test_x = rng.normal(size=(160, 12)), rng.normal(size=(60, 12))
    present_train = rng.uniform(size=(160, 2)) < 0.7
    present_test = rng.uniform(size=(60, 2)) < 0.7
    train, test = _split("train", train_x, weight, present_train), _split("test", test_x, weight, present_test)
    probed = evaluate_probe(train_x, train, {"test": (test_x, test)})
    assert probed["test"]["wrist_r2"] > 0.99 and probed["test"]["aperture_r2"] > 0.99
    assert probed["test"]["wrist_error_mm"] < 2.0
    assert probed[TRAIN_LOO]["wrist_r2"] > 0.99
    assert probed["test"]["samples"] == int(present_test.sum())
    mean = evaluate_probe(None, train, {"test": (None, test)})
    assert (
        abs(mean["test"]["wrist_r2"]) < 0.1 and mean["test"]["wrist_error_mm"] > 10 * probed["test"]["wrist_error_mm"]
    )


def test_probe_encoders_end_to_end(trained: tuple[Path, dict], repo: Path) -> None:
    folder, _ = trained
    result = probe_encoders(repo, {"ssl": folder}, random_init_seeds=(0,), test_splits=("test_lab", "test_wild"))
    assert set(result["results"]) == {"mean predictor", "random init (1 seed)", "ssl"}
    for splits in result["results"].values():
        assert set(splits) == {TRAIN_LOO, "test_lab", "test_wild"}
        assert all(np.isfinite(m["wrist_error_mm"]) for m in splits.values())
