"""Frames given as uint8 tensors are preprocessed on their device and match the PIL image processors.

The tensor path exists so a robot loop can hand camera frames that already live on the GPU to `predict_action`
without a host round trip; it must give the model the same pixels the PIL processors do, up to one 8-bit step of
resampling rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from transformers import GotOcr2ImageProcessorPil

from modeling_jala.modeling_jala_action import JalaForActionPrediction
from modeling_jala.processing_jala import preprocess_frame_tensors
from tests.fixtures.tiny_jala import tiny_jala_config, tiny_processor

HEAD = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "state_dim": 2, "action_dim": 3, "chunk_size": 4}


def _smooth_frame(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return np.asarray(noise.filter(ImageFilter.GaussianBlur(2)))


@pytest.mark.parametrize(("height", "width"), [(480, 640), (56, 56), (40, 30), (97, 131)])
@pytest.mark.parametrize("which", ["image_processor", "ssl_image_processor"])
def test_tensor_frames_match_the_pil_processor_within_one_8_bit_step(height: int, width: int, which: str) -> None:
    image_processor = getattr(tiny_processor(), which)
    frame = _smooth_frame(height * width, height, width)
    reference = image_processor(images=[Image.fromarray(frame)], return_tensors="pt")["pixel_values"]
    tensor = preprocess_frame_tensors(torch.from_numpy(frame)[None], image_processor)
    assert tensor.shape == reference.shape and tensor.dtype == torch.float32
    std = torch.tensor(image_processor.image_std)[None, :, None, None]
    steps = (tensor - reference).abs() * std * 255  # difference in 8-bit steps
    assert steps.max() <= 1.0 + 1e-3
    assert steps.mean() < 0.2


def test_the_processor_takes_a_tensor_batch_and_keeps_it_on_its_device() -> None:
    processor = tiny_processor()
    frames = np.stack([_smooth_frame(1, 48, 64), _smooth_frame(2, 48, 64)])
    texts = ["pick up the red cup", "push the box"]
    from_arrays = processor(images=list(frames), text=texts)
    from_tensor = processor(images=torch.from_numpy(frames), text=texts)
    assert torch.equal(from_tensor["input_ids"], from_arrays["input_ids"])
    assert torch.equal(from_tensor["attention_mask"], from_arrays["attention_mask"])
    for key in ("pixel_values", "ssl_pixel_values"):
        assert from_tensor[key].shape == from_arrays[key].shape
        torch.testing.assert_close(from_tensor[key], from_arrays[key], atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="2 images for 1 instructions"):
        processor(images=torch.from_numpy(frames), text=texts[:1])


def test_unsupported_processor_settings_are_named() -> None:
    tiled = GotOcr2ImageProcessorPil(size={"height": 56, "width": 56}, crop_to_patches=True)
    with pytest.raises(ValueError, match="crop_to_patches"):
        preprocess_frame_tensors(torch.zeros(1, 40, 40, 3, dtype=torch.uint8), tiled)
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frame_tensors(torch.zeros(1, 40, 40, 3), tiny_processor().image_processor)


def test_predict_action_takes_tensor_frames() -> None:
    pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = JalaForActionPrediction(JalaForActionPrediction.config_for_actions(tiny_jala_config(), HEAD)).eval()
    frames = np.stack([_smooth_frame(3, 48, 64), _smooth_frame(4, 48, 64)])
    state, noise = np.zeros((2, 2), dtype=np.float32), torch.randn(2, 4, 3)
    instructions = ["pick up the red cup", "push the box"]
    processor = tiny_processor()
    from_arrays = model.predict_action(list(frames), instructions, state, processor=processor, noise=noise)
    from_tensor = model.predict_action(torch.from_numpy(frames), instructions, state, processor=processor, noise=noise)
    assert from_tensor.shape == (2, 4, 3)
    torch.testing.assert_close(from_tensor, from_arrays, atol=1e-3, rtol=1e-3)


def test_compiled_inference_gives_the_same_actions() -> None:
    pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = JalaForActionPrediction(JalaForActionPrediction.config_for_actions(tiny_jala_config(), HEAD)).eval()
    frames = torch.from_numpy(np.stack([_smooth_frame(5, 48, 64)]))
    state, noise = np.zeros((1, 2), dtype=np.float32), torch.randn(1, 4, 3)
    processor = tiny_processor()
    eager = model.predict_action(frames, "push the box", state, processor=processor, noise=noise)
    model.compile_inference(mode=None, backend="eager")  # the wiring; CUDA graphs need a GPU
    compiled = model.predict_action(frames, "push the box", state, processor=processor, noise=noise)
    torch.testing.assert_close(compiled, eager)
    assert model._inference_action_head is not None
    assert not any("_inference_action_head" in key for key in model.state_dict())  # saving is unchanged
