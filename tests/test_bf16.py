"""JALA loaded in bfloat16 (`from_pretrained(..., dtype=torch.bfloat16)`): the models cast their float32 inputs
themselves, the motion tokenizer searches its codebooks in float32, and results stay close to float32's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_scripts.procedural_motion import ProceduralHandMotion
from modeling_jala.configuration_jala import JalaMotionTokenizerConfig
from modeling_jala.hand_jala import mirror_motion
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from tests.conftest import TINY_TOKENIZER
from tests.fixtures.tiny_jala import IMAGE_SIZE, IMAGE_TOKEN_ID, SSL_IMAGE_SIZE, tiny_jala_config, tiny_processor


def procedural_clips(count: int, frames: int, seed: int = 7) -> torch.Tensor:
    """(count, 2, frames, 162) float32 two-hand clips of the procedural generator."""
    sampler = ProceduralHandMotion()
    rng = np.random.default_rng(seed)
    clips = [
        torch.stack([mirror_motion(sampler.sample_right_hand(rng, frames)), sampler.sample_right_hand(rng, frames)])
        for _ in range(count)
    ]
    return torch.stack(clips).float()


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny tokenizer fitted to procedural motion, its codebooks initialised from encoder outputs (the first
    training step's data-dependent init) so that codes sit where the data is, as in any trained tokenizer."""
    motion = procedural_clips(8, 60)
    torch.manual_seed(0)
    tokenizer = JalaMotionTokenizer(JalaMotionTokenizerConfig(**TINY_TOKENIZER))
    tokenizer.fit_normalization(motion.reshape(-1, motion.shape[-1]))
    tokenizer.train()(motion)
    folder = tmp_path_factory.mktemp("tokenizer") / "bf16"
    tokenizer.eval().save_pretrained(folder)
    return folder


def test_bf16_tokenizer_round_trip_is_close_to_float32(tokenizer_folder: Path) -> None:
    motion = procedural_clips(4, 45, seed=11)  # float32, as datasets deliver it
    full = JalaMotionTokenizer.from_pretrained(tokenizer_folder).eval()
    half = JalaMotionTokenizer.from_pretrained(tokenizer_folder, dtype=torch.bfloat16).eval()
    assert half.dtype == torch.bfloat16
    reference = full.decode(full.encode(motion).ids)
    encoding = half.encode(motion)
    decoded = half.decode(encoding.ids)
    assert decoded.dtype == torch.float32  # motion is physical data: float32 in and out
    # bfloat16 keeps 8 mantissa bits (relative error 2^-8 ~ 0.4 %): on motion of ~0.35 m that is about a
    # millimetre per value. Codes that bf16 rounding flips are near-duplicates, so the motion barely moves.
    difference = (decoded - reference).abs()
    assert float(difference.mean()) < 2e-3 and float(difference.max()) < 1e-2, difference.max()
    # The expected-code decoding of generate_motion: one-hot distributions decode to the same motion.
    one_hot = torch.nn.functional.one_hot(encoding.ids, TINY_TOKENIZER["codebook_size"]).float()
    torch.testing.assert_close(half.decode_expected(one_hot, encoding.chunk_mask), decoded, atol=1e-3, rtol=0)


def test_bf16_pretraining_forward_and_generation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    JalaForMotionPretraining(tiny_jala_config()).save_pretrained(tmp_path / "jala")
    full = JalaForMotionPretraining.from_pretrained(tmp_path / "jala").eval()
    half = JalaForMotionPretraining.from_pretrained(tmp_path / "jala", dtype=torch.bfloat16).eval()
    assert half.dtype == half.motion_tokenizer.dtype == torch.bfloat16

    generator = torch.Generator().manual_seed(0)
    prefix = torch.cat([torch.randint(5, 30, (2, 5), generator=generator), torch.full((2, 4), IMAGE_TOKEN_ID)], 1)
    batch = {  # float32 pixels and raw float32 motion, tokenized by the model's own (bf16) tokenizer
        "input_ids": prefix,
        "pixel_values": torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "ssl_pixel_values": torch.randn(2, 4, 3, SSL_IMAGE_SIZE, SSL_IMAGE_SIZE, generator=generator),
        "motion": procedural_clips(2, 45),
        "frame_lengths": torch.tensor([45, 30]),
        "labelled": torch.tensor([True, False]),
    }
    losses = [model(**batch, generator=torch.Generator().manual_seed(1)).loss.float() for model in (full, half)]
    assert torch.isfinite(losses[1])
    torch.testing.assert_close(losses[1], losses[0], rtol=0.05, atol=0)

    images = [np.full((64, 64, 3), 120, dtype=np.uint8), np.zeros((48, 80, 3), dtype=np.uint8)]
    for strategy in ("expected", "sample"):
        generated = half.generate_motion(
            images=images,
            instructions=["pick up the red cup", "wave with the right hand"],
            processor=tiny_processor(),
            num_chunks=2,
            generator=torch.Generator().manual_seed(0),
            strategy=strategy,
        )
        assert generated.motion.shape == (2, 2, 30, 162) and generated.joints.shape == (2, 2, 30, 21, 3)
        assert torch.isfinite(generated.motion).all(), strategy
