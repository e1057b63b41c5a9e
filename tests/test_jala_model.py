"""The JALA model on tiny real configs (InternVL + DINOv3 at widths 32-64): shapes, attention, masking, losses,
EMA and gradient routing, causality, Hub round trip and a short optimisation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors.torch import load_file, save_file

from modeling_jala.attention_jala import block_causal_mask
from modeling_jala.configuration_jala import JalaConfig
from modeling_jala.layout_jala import IGNORE_TOKEN_ID
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.perceiver_jala import LatentPerceiver, grid_sincos_positions
from tests.conftest import REPO_ROOT
from tests.fixtures.tiny_jala import (
    IMAGE_SIZE,
    IMAGE_TOKEN_ID,
    SSL_IMAGE_SIZE,
    save_hub_folder,
    tiny_jala_config,
    tiny_processor,
)

K = 128


def make_batch(batch: int = 2, chunks: int = 3, seed: int = 0, labelled=(True, False)) -> dict:
    generator = torch.Generator().manual_seed(seed)
    prefix = torch.cat(
        [torch.randint(5, 30, (batch, 5), generator=generator), torch.full((batch, 4), IMAGE_TOKEN_ID)], dim=1
    )
    return {
        "input_ids": prefix,
        "attention_mask": torch.ones_like(prefix),
        "pixel_values": torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "motion_token_ids": torch.randint(0, 64, (batch, chunks, 2, K), generator=generator),
        "chunk_mask": torch.ones(batch, chunks, dtype=torch.bool),
        "hands_present": torch.ones(batch, 2, dtype=torch.bool),
        "labelled": torch.tensor(labelled[:batch]),
        "ssl_pixel_values": torch.randn(batch, chunks + 1, 3, SSL_IMAGE_SIZE, SSL_IMAGE_SIZE, generator=generator),
    }


@pytest.fixture
def model() -> JalaForMotionPretraining:
    torch.manual_seed(0)
    return JalaForMotionPretraining(tiny_jala_config()).eval()


def test_default_config_is_the_paper_structure() -> None:
    config = JalaConfig()
    text = config.vlm_config.text_config
    assert (text.hidden_size, text.num_hidden_layers) == (1536, 28)
    assert config.vlm_config.vision_config.hidden_size == 1024  # InternViT-300M
    assert (config.align_layer, config.align_weight, config.ema_decay) == (19, 0.5, 0.999)
    assert config.motion_tokens_per_chunk == 128
    assert config.target_mask_ratios[0] == 0.05 and config.target_mask_ratios[-1] == 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variant": "jalax"}, "variant must be one of"),
        ({"align_layer": 9}, r"align_layer=9 must lie in \[1, 4\]"),
        ({"variant": "wo_align"}, "set align_weight=0.0"),
        ({"align_weight": 0.0}, "use variant='wo_align'"),
        (
            {"perceiver_hidden_size": 30, "perceiver_num_heads": 4, "perceiver_patch_positions": "none"},
            "not divisible",
        ),
        ({"perceiver_patch_positions": "learned"}, "perceiver_patch_positions must be one of"),
        ({"perceiver_hidden_size": 30, "perceiver_num_heads": 2}, "divisible by 4"),
        ({"target_mask_ratios": [0.0, 1.5]}, "target_mask_ratios"),
    ],
)
def test_invalid_combinations_raise(overrides: dict, message: str) -> None:
    with pytest.raises(StrictDataclassError, match=message):
        tiny_jala_config(**overrides)


def test_shapes(model: JalaForMotionPretraining) -> None:
    batch = make_batch()
    outputs = model.model(**{k: v for k, v in batch.items() if k != "labelled"})
    hidden = model.config.hidden_size
    assert outputs.motion_hidden_states.shape == (2, 3, 2, K, hidden)
    assert outputs.predictive_embeddings.shape == (2, 3, 2, K, hidden)
    assert outputs.latent_actions.shape == (2, 3, 2, K, hidden)
    assert outputs.state_tokens.shape == (2, 2 * K, hidden)
    prefix, state, motion = 9, 2 * K, 3 * 2 * (K + 2)
    assert outputs.last_hidden_state.shape == (2, prefix + state + motion, hidden)


def test_grid_positions_give_every_cell_its_own_code_and_prefix_tokens_none() -> None:
    positions = grid_sincos_positions(1 + 9, 16, num_prefix_tokens=1)
    assert positions.shape == (10, 16)
    assert torch.equal(positions[0], torch.zeros(16))
    cells = positions[1:]
    assert torch.cdist(cells, cells).add(torch.eye(9)).min() > 1e-3  # 9 distinct codes for a 3 x 3 grid
    # Row code in the first half, column code in the second: cells of one row share the first half only.
    assert torch.equal(cells[0, :8], cells[2, :8]) and not torch.equal(cells[0, 8:], cells[2, 8:])
    with pytest.raises(ValueError, match="square patch grid"):
        grid_sincos_positions(8, 16)
    with pytest.raises(ValueError, match="divisible by 4"):
        grid_sincos_positions(9, 18)


@pytest.mark.parametrize("patch_positions", ["sincos_2d", "none"])
def test_the_perceiver_knows_where_a_patch_is_only_with_positions(patch_positions: str) -> None:
    torch.manual_seed(0)
    perceiver = LatentPerceiver(8, 16, 12, num_queries=4, num_layers=1, num_heads=2, patch_positions=patch_positions)
    torch.nn.init.normal_(perceiver.queries)
    start, end = torch.randn(2, 16, 8), torch.randn(2, 16, 8)
    swap = torch.randperm(16)  # the same patches, moved to other cells of the 4 x 4 grid
    moved = perceiver(start[:, swap], end[:, swap])
    same = torch.allclose(perceiver(start, end), moved, atol=1e-5)
    # Cross-attention reads its keys as a set: only the grid code can tell a moved hand from one in place.
    assert same == (patch_positions == "none")


# The fixture's encoder has CLS + 1 register before its patch grid, pooled here to 2 x 2.
@pytest.mark.parametrize(("selection", "tokens"), [("all", 2 + 4), ("cls", 1)])
def test_prefix_tokens_of_the_ssl_selection_get_no_grid_position(selection: str, tokens: int) -> None:
    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config(ssl_token_selection=selection, ssl_pool_grid=2)).eval()
    batch = make_batch()
    features = model.model.ssl_features(batch["ssl_pixel_values"][:, 0])
    assert features.shape[1] == tokens
    with torch.no_grad():
        assert torch.isfinite(model(**batch).loss)


def test_a_folder_saved_before_patch_positions_loads_without_them(tmp_path: Path) -> None:
    config = tiny_jala_config()
    config.save_pretrained(tmp_path)
    assert JalaConfig.from_pretrained(tmp_path).perceiver_patch_positions == "sincos_2d"
    saved = json.loads((tmp_path / "config.json").read_text())
    del saved["perceiver_patch_positions"]  # what config.json held before the option existed
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert JalaConfig.from_pretrained(tmp_path).perceiver_patch_positions == "none"


def test_block_causal_mask_structure() -> None:
    # prefix of 3 tokens (own blocks 0, 1, 2), then block 3 (2 tokens), block 4 (2 tokens); key 1 is padding.
    block_ids = torch.tensor([[0, 1, 2, 3, 3, 4, 4]])
    valid = torch.tensor([[True, False, True, True, True, True, True]])
    allowed = block_causal_mask(block_ids, valid, torch.float32)[0, 0] == 0
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0, 0],  # a padding query still sees itself
            [1, 0, 1, 0, 0, 0, 0],  # causal prefix, padding key hidden
            [1, 0, 1, 1, 1, 0, 0],  # block 3 sees itself entirely, nothing of block 4
            [1, 0, 1, 1, 1, 0, 0],
            [1, 0, 1, 1, 1, 1, 1],
            [1, 0, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(allowed, expected)


def _slots(model: JalaForMotionPretraining, batch: dict) -> torch.Tensor:
    inputs = {k: v for k, v in batch.items() if k != "labelled"}
    return model.model(**inputs, placeholder_slots=torch.zeros_like(batch["motion_token_ids"], dtype=torch.bool))


def test_a_chunk_sees_itself_and_the_past_but_not_the_next_chunk(model: JalaForMotionPretraining) -> None:
    batch = make_batch()
    reference = _slots(model, batch)
    later = dict(batch, motion_token_ids=batch["motion_token_ids"].clone())
    later["motion_token_ids"][:, 2] = (later["motion_token_ids"][:, 2] + 7) % 64
    changed = _slots(model, later)
    for name in ("motion_hidden_states", "predictive_embeddings"):
        torch.testing.assert_close(getattr(changed, name)[:, :2], getattr(reference, name)[:, :2])
        assert not torch.allclose(getattr(changed, name)[:, 2], getattr(reference, name)[:, 2])
    # Inside a chunk attention is bidirectional: the first slot of chunk 1 reacts to its last slot.
    inside = dict(batch, motion_token_ids=batch["motion_token_ids"].clone())
    inside["motion_token_ids"][:, 1, 1, -1] = (inside["motion_token_ids"][:, 1, 1, -1] + 3) % 64
    moved = _slots(model, inside)
    assert not torch.allclose(moved.motion_hidden_states[:, 1, 0, 0], reference.motion_hidden_states[:, 1, 0, 0])
    torch.testing.assert_close(moved.motion_hidden_states[:, 0], reference.motion_hidden_states[:, 0])


def test_prefix_is_causal(model: JalaForMotionPretraining) -> None:
    batch = make_batch()
    reference = _slots(model, batch).last_hidden_state
    changed = dict(batch, input_ids=batch["input_ids"].clone())
    changed["input_ids"][:, 3] = 29
    hidden = _slots(model, changed).last_hidden_state
    torch.testing.assert_close(hidden[:, :3], reference[:, :3])
    assert not torch.allclose(hidden[:, 3:], reference[:, 3:])


def test_future_frames_change_neither_h_nor_the_state_context(model: JalaForMotionPretraining) -> None:
    batch = make_batch()
    reference = _slots(model, batch)
    perturbed = dict(batch, ssl_pixel_values=batch["ssl_pixel_values"].clone())
    perturbed["ssl_pixel_values"][:, 2:] += torch.randn_like(perturbed["ssl_pixel_values"][:, 2:])
    changed = _slots(model, perturbed)
    torch.testing.assert_close(changed.predictive_embeddings, reference.predictive_embeddings)
    torch.testing.assert_close(changed.state_tokens, reference.state_tokens)
    torch.testing.assert_close(changed.latent_actions[:, 0], reference.latent_actions[:, 0])
    assert not torch.allclose(changed.latent_actions[:, 1:], reference.latent_actions[:, 1:])


def test_masking_follows_the_hybrid_scheme(model: JalaForMotionPretraining) -> None:
    generator = torch.Generator().manual_seed(0)
    chunks, trials = 6, 600
    slot_mask = torch.ones(trials, chunks, 2, dtype=torch.bool)
    mask = model.sample_placeholder_slots(slot_mask, torch.ones(trials, dtype=torch.bool), generator).float()
    per_chunk = mask.mean(dim=(2, 3))  # (trials, chunks)
    ratios = torch.tensor(model.config.target_mask_ratios)
    targets = []
    for row in per_chunk:
        # The target is the first chunk with any mask; before it nothing is masked.
        target = int(torch.nonzero(row > 0)[0])
        assert (row[:target] == 0).all()
        assert torch.isclose(ratios, row[target], atol=1 / 256).any(), float(row[target])
        targets.append(target)
    later = torch.cat([per_chunk[i, t + 1 :] for i, t in enumerate(targets)])
    assert abs(float(later.mean()) - 0.05) < 0.01
    counts = np.bincount(targets, minlength=chunks)
    assert counts.min() > trials / chunks * 0.6, counts  # uniform over chunks
    unlabelled = model.sample_placeholder_slots(slot_mask[:4], torch.zeros(4, dtype=torch.bool), generator)
    assert unlabelled.all()


def test_a_share_of_labelled_clips_hides_every_chunk() -> None:
    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config(all_chunks_hidden_share=0.5))
    generator = torch.Generator().manual_seed(0)
    chunks, trials = 4, 800
    slot_mask = torch.ones(trials, chunks, 2, dtype=torch.bool)
    slot_mask[: trials // 2, 3] = False  # clips with fewer chunks: their missing chunk does not count
    mask = model.sample_placeholder_slots(slot_mask, torch.ones(trials, dtype=torch.bool), generator)
    all_hidden = (mask | ~slot_mask[..., None]).flatten(1).all(-1)
    assert abs(float(all_hidden.float().mean()) - 0.5) < 0.05
    # The other half keeps the hybrid scheme: chunk 0 intact unless it is the target.
    first_chunk_visible = ~mask[~all_hidden, 0].flatten(1).any(-1)
    assert float(first_chunk_visible.float().mean()) > 0.6
    always = JalaForMotionPretraining(tiny_jala_config(all_chunks_hidden_share=1.0))
    assert always.sample_placeholder_slots(slot_mask, torch.ones(trials, dtype=torch.bool), generator).all()
    with pytest.raises(StrictDataclassError, match="all_chunks_hidden_share must be in"):
        tiny_jala_config(all_chunks_hidden_share=1.5)


def test_joint_generation_predicts_every_chunk_from_the_context_alone(
    model: JalaForMotionPretraining, caplog: pytest.LogCaptureFixture
) -> None:
    """One pass with every chunk hidden: chunk 0 is the expected strategy's first chunk (both see only the
    context), later chunks never see the model's own guesses, and chunk k ignores chunks after it. The fixture
    model was not trained with hidden clips, so it is warned about."""
    kwargs = {
        "images": [np.full((64, 64, 3), 90, dtype=np.uint8), np.full((64, 64, 3), 30, dtype=np.uint8)],
        "instructions": ["grasp the blue box", "push the red cup"],
        "processor": tiny_processor(),
        "hands": ("left", "right"),
    }
    joint = model.generate_motion(**kwargs, num_chunks=3, strategy="joint")
    expected = model.generate_motion(**kwargs, num_chunks=3, strategy="expected")
    frames = model.motion_tokenizer.config.chunk_frames
    torch.testing.assert_close(joint.motion[:, :, :frames], expected.motion[:, :, :frames], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(joint.motion[:, :, frames:], expected.motion[:, :, frames:], atol=1e-4)
    shorter = model.generate_motion(**kwargs, num_chunks=2, strategy="joint")
    torch.testing.assert_close(shorter.motion, joint.motion[:, :, : 2 * frames], atol=1e-5, rtol=1e-5)
    assert "all_chunks_hidden_share=0" in caplog.text


def test_unlabelled_clips_give_no_mcp_loss_but_an_alignment_loss(model: JalaForMotionPretraining) -> None:
    batch = make_batch(labelled=(False, False))
    outputs = model(**batch)
    assert int(outputs.num_masked_tokens) == 0
    assert float(outputs.mcp_loss) == 0.0
    assert outputs.align_loss is not None and float(outputs.align_loss) > 0
    labelled = model(**make_batch(labelled=(True, True)))
    assert int(labelled.num_masked_tokens) > 0 and float(labelled.mcp_loss) > 0


def test_ema_moves_exactly_the_lap_trunk_and_the_lsp_queries(model: JalaForMotionPretraining) -> None:
    inner = model.model
    with torch.no_grad():  # make the LSP trunk and the LAP queries differ from their EMA partners
        for parameter in inner.lsp.trunk_parameters():
            parameter.add_(0.1)
        inner.lap.queries.add_(0.1)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.ema_step()
    after = model.state_dict()
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    lap_trunk = {f"model.lap.{name}" for name, _ in inner.lap.named_parameters() if name != "queries"}
    assert moved == lap_trunk | {"model.lsp.queries"}
    decay = model.config.ema_decay
    expected = decay * before["model.lsp.queries"] + (1 - decay) * before["model.lap.queries"]
    torch.testing.assert_close(after["model.lsp.queries"], expected)


def test_gradients_reach_exactly_the_parameters_they_should(model: JalaForMotionPretraining) -> None:
    model.train()
    model(**make_batch(labelled=(True, True))).loss.backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "model.lap.queries" in with_grad  # queries learn through the alignment loss
    assert not any(name.startswith("model.lap.") and name != "model.lap.queries" for name in with_grad)
    assert "model.lsp.queries" not in with_grad
    assert "model.lsp.input_projection.weight" in with_grad  # LSP trunk learns through the VLM
    assert not any(name.startswith(("model.ssl_encoder.", "motion_tokenizer.")) for name in with_grad)
    assert {"motion_heads.weight", "motion_heads.bias", "model.motion_embedding.code_embeddings.weight"} <= with_grad
    assert any(name.startswith("model.vlm.language_model.") for name in with_grad)


def test_coupled_ema_variant_trains_the_whole_lsp_and_copies_it(model: JalaForMotionPretraining) -> None:
    torch.manual_seed(0)
    coupled = JalaForMotionPretraining(tiny_jala_config(variant="wo_dec"))
    assert coupled.model.lsp.queries.requires_grad and not coupled.model.lap.queries.requires_grad
    with torch.no_grad():
        coupled.model.lsp.queries.add_(1.0)
    before = coupled.model.lap.queries.clone()
    coupled.ema_step()
    assert not torch.equal(before, coupled.model.lap.queries)


def test_variants_without_latent_actions_have_no_lap() -> None:
    for variant, weight in (("wo_align", 0.0), ("wo_latent", 0.5)):
        model = JalaForMotionPretraining(tiny_jala_config(variant=variant, align_weight=weight))
        assert model.model.lap is None
        outputs = model(**make_batch(labelled=(True, True)))
        assert outputs.align_loss is None and float(outputs.loss) == float(outputs.mcp_loss)


def test_loss_decreases_over_30_cpu_steps() -> None:
    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config()).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    batch = make_batch(labelled=(True, True))
    mask = model.sample_placeholder_slots(
        torch.ones(2, 3, 2, dtype=torch.bool), batch["labelled"], torch.Generator().manual_seed(1)
    )
    losses = []
    for _ in range(30):
        outputs = model(**batch, placeholder_slots=mask)
        outputs.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.ema_step()
        losses.append(float(outputs.loss))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("strategy", ["expected", "sample", "joint"])
def test_generate_motion_returns_d162_and_joints(model: JalaForMotionPretraining, strategy: str) -> None:
    processor = tiny_processor()
    images = [np.full((64, 64, 3), 120, dtype=np.uint8), np.zeros((48, 80, 3), dtype=np.uint8)]
    generated = model.generate_motion(
        images=images,
        instructions=["pick up the red cup", "wave with the right hand"],
        processor=processor,
        num_chunks=2,
        hands=("right",),
        generator=torch.Generator().manual_seed(0),
        strategy=strategy,
    )
    assert generated.token_ids.shape == (2, 2, 2, K)
    assert (generated.token_ids[:, :, 0] == IGNORE_TOKEN_ID).all()  # the left hand was not asked for
    assert (generated.token_ids[:, :, 1] >= 0).all()
    assert generated.motion.shape == (2, 2, 30, 162)
    assert generated.joints.shape == (2, 2, 30, 21, 3)
    assert (generated.motion[:, 0] == 0).all() and torch.isfinite(generated.motion).all()


_RELOAD = """
import sys, torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoProcessor
folder, batch_file, out_file = sys.argv[1:4]
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
assert type(model).__name__ == "JalaForMotionPretraining" and type(processor).__name__ == "JalaProcessor"
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
batch = load_file(batch_file)
out = model.model(**{k: v for k, v in batch.items() if k != "labelled"})
logits = model.motion_logits(out.motion_hidden_states)
save_file({"logits": logits.contiguous(), "z": out.latent_actions.contiguous()}, out_file)
"""


def test_save_then_load_in_a_fresh_process_gives_identical_logits(
    model: JalaForMotionPretraining, tmp_path: Path
) -> None:
    folder = tmp_path / "jala"
    save_hub_folder(model, folder)
    files = {path.name for path in folder.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "modeling_jala.py",
        "configuration_jala.py",
        "perceiver_jala.py",
    } <= files
    assert {"processing_jala.py", "processor_config.json", "motion_tokenizer"} <= files
    assert (folder / "motion_tokenizer" / "model.safetensors").exists()
    assert not any(name.startswith("motion_tokenizer.") for name in load_file(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_jala.JalaForMotionPretraining"

    batch = make_batch()
    batch["placeholder_slots"] = torch.zeros_like(batch["motion_token_ids"], dtype=torch.bool)
    save_file(
        {k: v.contiguous().to(torch.int64) if v.dtype == torch.bool else v.contiguous() for k, v in batch.items()},
        tmp_path / "batch.safetensors",
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            _RELOAD,
            str(folder),
            str(tmp_path / "batch.safetensors"),
            str(tmp_path / "out.safetensors"),
        ],
        check=True,
        cwd=tmp_path,
        timeout=300,
    )
    reloaded = load_file(tmp_path / "out.safetensors")
    local = model.model(**{k: v for k, v in batch.items() if k != "labelled"})
    assert torch.equal(reloaded["logits"], model.motion_logits(local.motion_hidden_states))
    assert torch.equal(reloaded["z"], local.latent_actions)


def test_loading_is_strict(model: JalaForMotionPretraining, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights.pop("motion_heads.weight")
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys .*motion_heads\.weight"):
        JalaForMotionPretraining.from_pretrained(tmp_path)


def test_missing_tokenizer_subfolder_is_an_error(model: JalaForMotionPretraining, tmp_path: Path) -> None:
    model.save_pretrained(tmp_path)
    for path in (tmp_path / "motion_tokenizer").iterdir():
        path.unlink()
    (tmp_path / "motion_tokenizer").rmdir()
    with pytest.raises(OSError):
        JalaForMotionPretraining.from_pretrained(tmp_path)


def test_from_components_loads_pretrained_backbone_encoder_and_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoModel, InternVLForConditionalGeneration

    from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer

    config = tiny_jala_config()
    torch.manual_seed(1)
    vlm = InternVLForConditionalGeneration(config.vlm_config)  # a released VLM checkpoint has an LM head
    vlm.save_pretrained(tmp_path / "vlm")
    encoder = AutoModel.from_config(config.ssl_encoder_config)
    encoder.save_pretrained(tmp_path / "ssl")
    tokenizer = JalaMotionTokenizer(config.motion_tokenizer_config)
    tokenizer.save_pretrained(tmp_path / "tokenizer")

    model = JalaForMotionPretraining.from_components(
        tmp_path / "vlm",
        tmp_path / "ssl",
        tmp_path / "tokenizer",
        align_layer=2,
        perceiver_hidden_size=32,
        perceiver_num_heads=2,
    )
    assert model.config.backbone_name_or_path == str(tmp_path / "vlm")
    torch.testing.assert_close(
        model.model.vlm.language_model.layers[0].mlp.up_proj.weight,
        vlm.model.language_model.layers[0].mlp.up_proj.weight,
    )
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(model.model.ssl_encoder.state_dict()[name], tensor), name
    for name, tensor in tokenizer.state_dict().items():
        assert torch.equal(model.motion_tokenizer.state_dict()[name], tensor), name
    assert torch.equal(model.model.lap.input_projection.weight, model.model.lsp.input_projection.weight)


def test_cached_chunk_decoding_matches_the_full_forward(model: JalaForMotionPretraining) -> None:
    from transformers import DynamicCache

    from modeling_jala.modeling_jala import SequencePart

    batch = make_batch()
    ids = batch["motion_token_ids"]
    hidden = torch.zeros_like(ids, dtype=torch.bool)
    hidden[:, 2] = torch.rand(ids[:, 2].shape, generator=torch.Generator().manual_seed(0)) < 0.5
    inputs = {k: v for k, v in batch.items() if k != "labelled"}
    full = model.model(**inputs, placeholder_slots=hidden).motion_hidden_states[:, 2]

    inner = model.model
    features = inner.ssl_features(batch["ssl_pixel_values"][:, :1])
    context, _ = inner.context_part(batch["input_ids"], batch["attention_mask"], batch["pixel_values"], features[:, 0])
    cache = DynamicCache(config=model.config.vlm_config.get_text_config())
    mask = block_causal_mask(context.block_ids, context.key_valid, context.embeddings.dtype)
    inner.run_language_model(context.embeddings, mask, context.position_ids, cache=cache)
    slots = torch.ones(2, 1, 2, dtype=torch.bool)
    seen = context
    for k in range(2):
        chunk = inner.motion_part(ids[:, k : k + 1], hidden[:, k : k + 1], slots, context, k)
        model._cached_chunk_states(chunk, seen, cache, keep=True)
        seen = SequencePart.cat([seen, chunk])
    target = inner.motion_part(ids[:, 2:3], hidden[:, 2:3], slots, context, 2)
    cached = model._cached_chunk_states(target, seen, cache, keep=False)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-4)
    assert cache.get_seq_length() == seen.embeddings.shape[1]  # the probe pass left no keys behind


def test_lapa_variant_learns_latent_codes_from_every_clip() -> None:
    torch.manual_seed(0)
    model = JalaForMotionPretraining(tiny_jala_config(variant="lapa")).train()
    assert model.model.lap is None and model.model.lapa is not None
    outputs = model(**make_batch(labelled=(False, False)))
    assert int(outputs.num_masked_tokens) == 0 and outputs.align_loss is None
    assert float(outputs.latent_code_loss) > 0 and float(outputs.latent_reconstruction_loss) > 0
    outputs.loss.backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"latent_code_head.weight", "model.lapa.idm.queries", "model.lapa.fdm_output.1.weight"} <= grads
    assert "model.lapa.codebook.weight" in grads  # the VQ codebook loss trains the codes
    assert any(name.startswith("model.vlm.language_model.") for name in grads)


def test_loading_the_processor_never_prompts_for_remote_code(model: JalaForMotionPretraining, tmp_path: Path) -> None:
    save_hub_folder(model, tmp_path)
    script = (
        "import sys; from modeling_jala.processing_jala import JalaProcessor; "
        "p = JalaProcessor.from_pretrained(sys.argv[1]); print(type(p.tokenizer).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Do you wish to run the custom code" not in result.stdout + result.stderr


def test_every_codebook_has_its_own_embedding_rows_and_head(model: JalaForMotionPretraining) -> None:
    tokenizer = model.config.motion_tokenizer_config
    codebooks = 2 * tokenizer.num_groups * tokenizer.num_residual_layers
    vocabulary, hidden = tokenizer.codebook_size, model.config.hidden_size
    assert model.model.motion_embedding.code_embeddings.weight.shape == (codebooks * vocabulary, hidden)
    assert model.motion_heads.weight.shape == (codebooks, vocabulary, hidden)
    assert model.motion_heads.bias.shape == (codebooks, vocabulary)
    # Slot -> codebook follows the tokenizer's step-major (step, group, layer) layout, wrist then finger.
    layout = model.slot_layout
    slots = layout.codebook_of_slot()
    per_part = tokenizer.num_groups * tokenizer.num_residual_layers
    expected = [
        part * per_part + group * tokenizer.num_residual_layers + layer
        for part in range(2)
        for _step in range(tokenizer.latent_steps)
        for group in range(tokenizer.num_groups)
        for layer in range(tokenizer.num_residual_layers)
    ]
    assert slots.tolist() == expected
    assert layout.residual_layer_of_slot().tolist() == [c % tokenizer.num_residual_layers for c in expected]


def test_the_same_id_in_two_codebooks_embeds_differently(model: JalaForMotionPretraining) -> None:
    embedding = model.model.motion_embedding
    ids = torch.full((1, 1, 2, model.config.motion_tokens_per_chunk), 3)
    hidden = torch.zeros_like(ids, dtype=torch.bool)
    blocks = embedding(ids, hidden)[0, 0, 0, 1:-1]  # right after <mot>
    codes = blocks - embedding.slot_embeddings - embedding.hand_embeddings[0]
    per_part = model.slot_layout.codebooks_per_part
    # Slots 0 and 1 (layer 0 and 1 of group 0) hold id 3 of different codebooks; slot 0 and slot `per_part`
    # (the next latent step) hold id 3 of the same codebook.
    assert not torch.allclose(codes[0], codes[1])
    torch.testing.assert_close(codes[0], codes[per_part])


def test_heads_score_each_slot_with_its_own_codebook(model: JalaForMotionPretraining) -> None:
    torch.manual_seed(0)
    layout = model.slot_layout
    states = torch.randn(3, 2 * layout.tokens_per_part, model.config.hidden_size)
    logits = model.motion_logits(states)
    codebook = layout.codebook_of_slot()
    weight, bias = model.motion_heads.weight, model.motion_heads.bias
    expected = torch.stack([states[:, s] @ weight[codebook[s]].T + bias[codebook[s]] for s in range(len(codebook))], 1)
    torch.testing.assert_close(logits, expected)


def test_per_codebook_metrics_match_the_overall_accuracy(model: JalaForMotionPretraining) -> None:
    from trainers.jala_trainer import codebook_terms

    model.eval()
    torch.manual_seed(1)
    out = model(**make_batch(labelled=(True, True)))
    codebooks = 2 * model.slot_layout.codebooks_per_part
    assert out.mcp_accuracy_per_codebook.shape == (codebooks,) == out.mcp_loss_per_codebook.shape
    used = ~out.mcp_loss_per_codebook.isnan()
    assert used.any()
    terms = codebook_terms(out, model.config.motion_tokenizer_config)
    layers = model.config.motion_tokenizer_config.num_residual_layers
    assert {f"mcp_accuracy_layer{layer}" for layer in range(layers)} >= {k for k in terms if "accuracy_layer" in k}
    assert {"mcp_loss_wrist", "mcp_loss_finger", "mcp_accuracy_wrist", "mcp_accuracy_finger"} <= set(terms)
    assert all(0.0 <= value <= 1.0 for key, value in terms.items() if "accuracy" in key)


def test_expected_decoding_of_one_hot_distributions_is_plain_decoding(model: JalaForMotionPretraining) -> None:
    tokenizer = model.motion_tokenizer
    config = tokenizer.config
    ids = torch.randint(
        config.codebook_size, (2, 2, 3, config.tokens_per_chunk), generator=torch.Generator().manual_seed(0)
    )
    chunk_mask = torch.tensor([[True, True, False], [False, True, True]])[None].expand(2, 2, 3).clone()
    chunk_mask[1, 0] = False
    one_hot = torch.nn.functional.one_hot(ids, config.codebook_size).float()
    torch.testing.assert_close(
        tokenizer.decode_expected(one_hot, chunk_mask=chunk_mask),
        tokenizer.decode(ids, chunk_mask=chunk_mask),
        atol=1e-5,
        rtol=1e-5,
    )


def test_expected_decoding_decodes_the_mean_latent(model: JalaForMotionPretraining) -> None:
    """Two equally likely codes in one slot: the decoded latent is their mean, not either of them."""
    tokenizer = model.motion_tokenizer
    config = tokenizer.config
    ids = torch.zeros(1, 1, 1, config.tokens_per_chunk, dtype=torch.long)
    probabilities = torch.nn.functional.one_hot(ids, config.codebook_size).float()
    probabilities[..., 0, :] = 0.0
    probabilities[..., 0, 1] = probabilities[..., 0, 2] = 0.5  # slot 0: wrist, step 0, group 0, layer 0
    quantizer = tokenizer.wrist.quantizer
    grid = probabilities[0, 0, :, : config.tokens_per_part].reshape(
        -1, config.num_groups, config.num_residual_layers, config.codebook_size
    )
    latent = quantizer.expected_dequantize(grid)
    book = quantizer.codebook(0, 0).codebook
    layers = [quantizer.codebook(0, layer).codebook[0] for layer in range(1, config.num_residual_layers)]
    torch.testing.assert_close(latent[0, : config.code_dim], 0.5 * (book[1] + book[2]) + sum(layers))
    mask = torch.ones(1, 1, 1, dtype=torch.bool)
    assert torch.isfinite(tokenizer.decode_expected(probabilities, chunk_mask=mask, handedness=("right",))).all()


def test_expected_generation_is_deterministic_and_unknown_strategies_fail(model: JalaForMotionPretraining) -> None:
    processor = tiny_processor()
    kwargs = {
        "images": [np.full((64, 64, 3), 90, dtype=np.uint8)],
        "instructions": ["grasp the blue box"],
        "processor": processor,
        "num_chunks": 2,
        "strategy": "expected",
    }
    first = model.generate_motion(**kwargs, generator=torch.Generator().manual_seed(0))
    second = model.generate_motion(**kwargs, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(first.motion, second.motion)
    with pytest.raises(ValueError, match="strategy must be one of"):
        model.generate_motion(**{**kwargs, "strategy": "beam"})
    with pytest.raises(StrictDataclassError, match="decoding_strategy must be one of"):
        tiny_jala_config(decoding_strategy="beam")


def test_expected_generation_commits_the_tokens_of_the_motion_it_outputs(model: JalaForMotionPretraining) -> None:
    """The next chunk's context is the output chunk re-tokenized, not each slot's most likely code."""
    generated = model.generate_motion(
        images=[np.full((64, 64, 3), 90, dtype=np.uint8), np.full((64, 64, 3), 30, dtype=np.uint8)],
        instructions=["grasp the blue box", "push the red cup"],
        processor=tiny_processor(),
        num_chunks=3,
        hands=("left", "right"),
        strategy="expected",
    )
    present = torch.ones(2, 2, dtype=torch.bool)
    retokenized = model.motion_tokenizer.encode(generated.motion, hand_mask=present).ids  # (B, 2, N, K)
    assert torch.equal(generated.token_ids, retokenized.transpose(1, 2))


@pytest.mark.parametrize("variant", ["jala", "wo_dec", "lapa"])
def test_frozen_parts_stay_frozen_after_from_pretrained(variant: str, tmp_path: Path) -> None:
    """transformers' loading re-creates parameters with gradients on; a reloaded model (continued pretraining)
    must train exactly what a new one trains: not the SSL encoder, the EMA targets or the motion tokenizer."""
    torch.manual_seed(0)
    new = JalaForMotionPretraining(tiny_jala_config(variant=variant))
    new.save_pretrained(tmp_path)
    reloaded = JalaForMotionPretraining.from_pretrained(tmp_path)
    flags = {name: parameter.requires_grad for name, parameter in new.named_parameters()}
    assert {name: parameter.requires_grad for name, parameter in reloaded.named_parameters()} == flags
    assert not any(
        flag for name, flag in flags.items() if name.startswith(("model.ssl_encoder.", "motion_tokenizer."))
    )
    if variant == "jala":
        assert not flags["model.lsp.queries"] and flags["model.lap.queries"]
        assert not any(flag for name, flag in flags.items() if name.startswith("model.lap.blocks."))
