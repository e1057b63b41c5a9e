"""Contracts between the layers: what the dataset stores, what the collators build and what the model reads.

Each test crosses a layer boundary with real code on both sides (builder -> shards -> collators -> model), so a
constant copied instead of imported, an axis swapped in one place only or features selected differently at build
time and at inference fail here (docs/design.md §3).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from PIL import Image

from dataset_scripts.builder import MotionTokenHook, SslFeatureHook, build_unihand
from dataset_scripts.collator import UniHandCollator
from dataset_scripts.streaming import UniHandStream
from modeling_jala import layout_jala
from modeling_jala.configuration_jala import JalaConfig, JalaMotionTokenizerConfig
from modeling_jala.layout_jala import (
    CLIP_MOTION_AXES,
    CLIP_TOKEN_AXES,
    IGNORE_TOKEN_ID,
    ROW_MOTION_AXES,
    ROW_TOKEN_AXES,
    SEQUENCE_TOKEN_AXES,
    MotionSlotLayout,
    reorder_axes,
)
from modeling_jala.modeling_jala import JalaForMotionPretraining, JalaModel
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from tests.conftest import REPO_ROOT, TINY_TOKENIZER
from tests.fixtures.tiny_jala import SSL_IMAGE_SIZE, save_tiny_dinov3, tiny_jala_config, tiny_processor
from tests.fixtures.unihand_factory import FixtureSource
from trainers.pretrain_collator import JalaPretrainCollator
from trainers.train_tokenizer import PRESETS as TOKENIZER_PRESETS

# ------------------------------------------------------------------------------------------------ constants


@pytest.mark.parametrize(
    "tokenizer_settings",
    [{}, TINY_TOKENIZER, *TOKENIZER_PRESETS.values()],
    ids=["paper", "tests", *TOKENIZER_PRESETS],
)
def test_layout_constants_agree_with_the_configs(tokenizer_settings: dict) -> None:
    config = JalaMotionTokenizerConfig(**tokenizer_settings)
    layout = MotionSlotLayout.from_config(config)
    assert config.chunk_frames == layout_jala.CHUNK_FRAMES
    assert (
        layout.tokens_per_chunk
        == config.tokens_per_chunk
        == JalaConfig(motion_tokenizer_config=config).motion_tokens_per_chunk
    )
    codebooks = layout.codebook_of_slot()
    assert codebooks.shape == (config.tokens_per_chunk,)
    assert codebooks.unique().tolist() == list(range(layout.num_codebooks))
    # Wrist slots first, then finger slots: the tokenizer's part order.
    assert (layout.part_of_slot()[: layout.tokens_per_part] == 0).all()
    assert (layout.part_of_slot()[layout.tokens_per_part :] == 1).all()


#: Names of contract constants that only layout_jala.py may assign, and values no other module may spell out.
CONTRACT_NAMES = {"HANDS", "IGNORE_TOKEN_ID", "IGNORED_LABEL", "TOKENS_PER_CHUNK", "CHUNK_FRAMES"}
CONTRACT_VALUES = {("left", "right"), -100, 15}
SCANNED_PACKAGES = ("modeling_jala", "dataset_scripts", "robot_data", "trainers", "spaces", "benchmarks", "tests")


def _module_level_constants(path: Path) -> list[tuple[str, int, object]]:
    """(name, line, literal value or None) of every module-level assignment in `path`."""
    found = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        try:
            literal = ast.literal_eval(value)
        except ValueError:
            literal = None
        found.extend((target.id, node.lineno, literal) for target in targets if isinstance(target, ast.Name))
    return found


def test_contract_constants_are_defined_once() -> None:
    """Hand order, ignore id, tokens per chunk, chunk length: assigned in layout_jala.py and imported everywhere
    else. (`FPS` of robot datasets is their own; the UniHand-Mix frame rate is 15.)"""
    copies = []
    for package in SCANNED_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            if path.name == "layout_jala.py" or ".venv" in path.parts:
                continue
            for name, line, value in _module_level_constants(path):
                named = name in CONTRACT_NAMES or (name == "FPS" and value in (15, 15.0))
                spelled = isinstance(value, tuple) and value == ("left", "right")
                spelled |= name.isupper() and isinstance(value, int) and not isinstance(value, bool) and value == -100
                if named or spelled:
                    copies.append(f"{path.relative_to(REPO_ROOT)}:{line} {name} = {value!r}")
    assert not copies, "import these from modeling_jala.layout_jala instead:\n" + "\n".join(copies)


def test_reorder_axes_converts_by_name_for_numpy_and_torch() -> None:
    row = np.arange(4 * 2 * 3).reshape(4, 2, 3)  # (frame, hand, feature)
    clip = reorder_axes(row, ROW_MOTION_AXES, CLIP_MOTION_AXES)
    assert clip.shape == (2, 4, 3) and clip[1, 2, 0] == row[2, 1, 0]
    batch = torch.arange(5 * 2 * 3 * 7).reshape(5, 2, 3, 7)  # (batch, hand, chunk, slot)
    sequence = reorder_axes(batch, CLIP_TOKEN_AXES, SEQUENCE_TOKEN_AXES)
    assert sequence.shape == (5, 3, 2, 7) and sequence[4, 2, 1, 6] == batch[4, 1, 2, 6]
    assert torch.equal(reorder_axes(sequence, SEQUENCE_TOKEN_AXES, CLIP_TOKEN_AXES), batch)
    assert ROW_TOKEN_AXES == SEQUENCE_TOKEN_AXES  # rows store tokens in the sequence order
    with pytest.raises(ValueError, match="same distinct axes"):
        reorder_axes(row, ROW_MOTION_AXES, ("frame", "hand", "slot"))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        reorder_axes(row[0], ROW_MOTION_AXES, CLIP_MOTION_AXES)


# ------------------------------------------------------------------------------------------------ SSL features


def _frames(count: int, size: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def _model_with_encoder(encoder_dir, **config_overrides) -> JalaModel:
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(encoder_dir).eval()
    model = JalaModel(tiny_jala_config(ssl_encoder_config=encoder.config, **config_overrides)).eval()
    model.ssl_encoder.load_state_dict(encoder.state_dict(), strict=True)
    return model


@pytest.mark.parametrize("selection", ["patches", "all"])
def test_precomputed_ssl_features_equal_the_models_on_the_same_frames(tmp_path, selection: str) -> None:
    torch.manual_seed(0)
    encoder_dir = save_tiny_dinov3(tmp_path / "encoder", num_register_tokens=2)
    processor = tiny_processor()
    processor.ssl_image_processor.save_pretrained(encoder_dir)  # the hook and the model preprocess alike
    hook = SslFeatureHook(encoder_dir, token_selection=selection, pool_grid=2)
    model = _model_with_encoder(encoder_dir, ssl_token_selection=selection, ssl_pool_grid=2)

    frames = _frames(3, 40, seed=1)
    precomputed = hook._encode(frames)
    pixels = processor.ssl_image_processor(images=frames, return_tensors="pt")["pixel_values"]
    on_the_fly = model.ssl_features(pixels)
    assert precomputed.shape == on_the_fly.shape == ((3, 4 + (3 if selection == "all" else 0), 32))
    torch.testing.assert_close(precomputed, on_the_fly)


def test_a_model_refuses_an_unknown_ssl_token_selection() -> None:
    with pytest.raises(StrictDataclassError, match="ssl_token_selection"):
        tiny_jala_config(ssl_token_selection="registers")


def test_precomputed_and_pixel_batches_give_the_model_the_same_features(tmp_path) -> None:
    """End to end: a build with stored features vs the same rows' boundary frames through the pretraining
    collator and the model's SSL path. The two differ only by float16 storage and by the collator decoding the
    frames at the VLM's size before the SSL processor resizes them — bounded here."""
    torch.manual_seed(0)
    encoder_dir = save_tiny_dinov3(tmp_path / "encoder", num_register_tokens=1)
    processor = tiny_processor()
    processor.ssl_image_processor.save_pretrained(encoder_dir)
    repo = tmp_path / "repo"
    source = FixtureSource(num_clips=4, seed=3, domain="lab", split="train", image_size=SSL_IMAGE_SIZE)
    build_unihand(repo, [source], ssl_hook=SslFeatureHook(encoder_dir), progress=False, preview=False)
    rows = list(UniHandStream(repo, split="train", infinite=False, shuffle=False))
    model = _model_with_encoder(encoder_dir)
    size = (SSL_IMAGE_SIZE, SSL_IMAGE_SIZE)
    stored = JalaPretrainCollator(processor, UniHandCollator(image_size=size, boundary="ssl"))(rows)
    pixels = JalaPretrainCollator(processor, UniHandCollator(image_size=size, boundary="images"))(rows)
    on_the_fly = model.ssl_features(pixels["ssl_pixel_values"])
    exists = torch.zeros(stored["ssl_features"].shape[:2], dtype=torch.bool)
    for index, row in enumerate(rows):
        exists[index, : len(row["boundary_frames"])] = True
    assert stored["ssl_features"].shape == on_the_fly.shape
    torch.testing.assert_close(stored["ssl_features"][exists], on_the_fly[exists], atol=2e-2, rtol=1e-2)


# ------------------------------------------------------------------------------------------------ motion tokens


def test_builder_collator_model_round_trip_of_token_ids_and_hand_order(tmp_path) -> None:
    """Ids stored by the builder's token hook, collated and reordered for the model, equal the model's own
    tokenization of the same rows' raw motion — per hand, so a swapped hand or chunk axis anywhere fails."""
    torch.manual_seed(0)
    config = tiny_jala_config()
    tokenizer_dir = tmp_path / "tokenizer"
    JalaMotionTokenizer(config.motion_tokenizer_config).eval().save_pretrained(tokenizer_dir)
    repo = tmp_path / "repo"
    source = FixtureSource(num_clips=12, seed=0, domain="lab", split="train", min_seconds=1.0, max_seconds=3.0)
    build_unihand(repo, [source], token_hook=MotionTokenHook(tokenizer_dir), progress=False, preview=False)
    rows = [row for row in UniHandStream(repo, split="train", infinite=False, shuffle=False) if row["labelled"]]
    assert {tuple(row["hands_present"]) for row in rows} >= {(True, False), (False, True)}, "need one-hand clips"

    processor = tiny_processor()
    collate = JalaPretrainCollator(processor, UniHandCollator(image_size=(56, 56), boundary="images"))
    stored = collate(rows)["motion_token_ids"]  # (B, N, 2, K)
    model = JalaForMotionPretraining(config).eval()
    model.set_motion_tokenizer(JalaMotionTokenizer.from_pretrained(tokenizer_dir))
    raw = UniHandCollator(image_size=(56, 56), boundary="none")(rows)
    own, chunk_mask = model.tokenize_motion(
        raw["motion"], raw["frame_lengths"], raw["hands_present"], torch.ones(len(rows), dtype=torch.bool)
    )
    assert stored.shape == own.shape and stored.shape[2:] == (2, config.motion_tokens_per_chunk)
    assert torch.equal(stored, own)
    for index, row in enumerate(rows):
        for hand, present in enumerate(row["hands_present"]):
            ids = stored[index, chunk_mask[index], hand]
            assert bool((ids == IGNORE_TOKEN_ID).all()) != bool(present), (row["id"], hand)


def test_a_misspelled_batch_key_is_an_error_naming_it() -> None:
    model = JalaForMotionPretraining(tiny_jala_config()).eval()
    with pytest.raises(TypeError, match="hand_present"):
        model(input_ids=torch.zeros(1, 4, dtype=torch.long), hand_present=torch.ones(1, 2, dtype=torch.bool))
