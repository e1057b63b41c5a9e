"""The robot policy's observation side: named cameras (one or several), the trainable-vision switch, lossless and
lossy video encodings and the codec round trip that gives evaluation the training frames' pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_jala.modeling_jala_action import JalaForActionPrediction
from robot_data.lerobot_v3 import (
    VIDEO_ENCODINGS,
    ActionChunkDataset,
    LeRobotV3Dataset,
    LeRobotV3Writer,
    codec_round_trip,
)
from tests.fixtures.tiny_jala import tiny_jala_config, tiny_processor

HEAD = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "action_dim": 3, "state_dim": 2, "chunk_size": 4}
FRONT, WRIST = "observation.images.front", "observation.images.wrist"


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def policy(**head: object) -> JalaForActionPrediction:
    torch.manual_seed(0)
    config = JalaForActionPrediction.config_for_actions(tiny_jala_config(), {**HEAD, **head})
    model = JalaForActionPrediction(config).eval()
    with torch.no_grad():  # adaLN-Zero starts the DiT blind to its context; give those layers weights
        for parameter in model.action_head.parameters():
            if not parameter.any():
                parameter.normal_(0.0, 0.05)
    model.set_processor(tiny_processor())
    return model


def frame(level: int, size: int = 40) -> np.ndarray:
    return np.full((size, size, 3), level, dtype=np.uint8)


def textured(seed: int, size: int = 48) -> np.ndarray:
    """A frame with fine detail (a codec at CRF 30 cannot keep it exactly)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (size // 4, size // 4, 3), dtype=np.uint8)
    return np.ascontiguousarray(coarse.repeat(4, 0).repeat(4, 1))


# -- processor ---------------------------------------------------------------------------------------------------


def test_processor_gives_each_camera_an_image_block_and_the_ssl_encoder_the_first() -> None:
    processor = tiny_processor()
    one = processor(images=[frame(10), frame(200)], text=["a", "b"])
    two = processor(images=[[frame(10), frame(90)], [frame(200), frame(30)]], text=["a", "b"])
    image_tokens = (two["input_ids"] == processor.image_token_id).sum(-1)
    assert image_tokens.tolist() == [2 * processor.image_seq_length] * 2
    assert two["pixel_values"].shape[0] == 4  # sample-major: (sample 0: front, wrist), (sample 1: front, wrist)
    torch.testing.assert_close(two["pixel_values"][0::2], one["pixel_values"])
    torch.testing.assert_close(two["ssl_pixel_values"], one["ssl_pixel_values"])  # primary camera only
    tensors = processor(
        images=torch.from_numpy(np.stack([[frame(10), frame(90)], [frame(200), frame(30)]])), text=["a", "b"]
    )
    torch.testing.assert_close(tensors["pixel_values"], two["pixel_values"], atol=0.05, rtol=0)
    assert torch.equal(tensors["input_ids"], two["input_ids"])
    with pytest.raises(ValueError, match="same cameras"):
        processor(images=[[frame(10), frame(90)], [frame(200)]], text=["a", "b"])


# -- policy ------------------------------------------------------------------------------------------------------


def test_one_camera_policy_takes_bare_images_or_its_key() -> None:
    model = policy()
    assert model.config.action_head_config.image_keys == ["observation.image"]
    noise = torch.randn(1, 4, 3)
    bare = model.predict_action(frame(60), "push the box", np.zeros(2), noise=noise)
    keyed = model.predict_action(
        {"observation.image": frame(60), FRONT: frame(0)}, "push the box", np.zeros(2), noise=noise
    )
    torch.testing.assert_close(bare, keyed)


def test_two_camera_policy_reads_both_cameras_by_name() -> None:
    model = policy(image_keys=[FRONT, WRIST])
    noise, state = torch.randn(2, 4, 3), np.zeros((2, 2))
    observation = {FRONT: [frame(10), frame(200)], WRIST: [frame(90), frame(30)]}
    actions = model.predict_action(observation, ["a", "b"], state, noise=noise)
    assert actions.shape == (2, 4, 3)
    swapped = model.predict_action(
        {FRONT: observation[WRIST], WRIST: observation[FRONT]}, ["a", "b"], state, noise=noise
    )
    assert not torch.allclose(actions, swapped)  # the order of image_keys, not of the dict, decides
    reordered = model.predict_action(dict(reversed(list(observation.items()))), ["a", "b"], state, noise=noise)
    torch.testing.assert_close(actions, reordered)
    as_tensors = {key: torch.from_numpy(np.stack(images)) for key, images in observation.items()}
    torch.testing.assert_close(
        model.predict_action(as_tensors, ["a", "b"], state, noise=noise), actions, atol=0.05, rtol=0
    )
    model.reset()
    assert model.select_action(observation, ["a", "b"], state, noise=noise).shape == (2, 3)


def test_a_missing_camera_names_the_keys_present() -> None:
    model = policy(image_keys=[FRONT, WRIST])
    with pytest.raises(KeyError, match=r"no \['observation.images.wrist'\].*holds \['observation.images.front'\]"):
        model.predict_action({FRONT: frame(10)}, "a", np.zeros(2))
    with pytest.raises(TypeError, match="dict"):
        model.predict_action(frame(10), "a", np.zeros(2))


def test_image_keys_must_be_distinct_and_present() -> None:
    with pytest.raises(Exception, match="image_keys"):  # huggingface_hub wraps the ValueError
        policy(image_keys=[])
    with pytest.raises(Exception, match="image_keys"):  # huggingface_hub wraps the ValueError
        policy(image_keys=[FRONT, FRONT])


@pytest.mark.parametrize(
    ("switch", "backbone", "trainable"),
    [(None, None, True), (None, "OpenGVLab/InternVL3-2B-hf", False), (False, None, False), (True, "x/y", True)],
)
def test_vision_tower_switch(switch: bool | None, backbone: str | None, trainable: bool) -> None:
    config = tiny_jala_config()
    config.backbone_name_or_path = backbone
    torch.manual_seed(0)
    action_config = JalaForActionPrediction.config_for_actions(config, {**HEAD, "vision_tower_trainable": switch})
    model = JalaForActionPrediction(action_config).train()
    tower = model.model.vlm.vision_tower
    assert model.vision_tower_is_trainable is trainable
    assert all(parameter.requires_grad is trainable for parameter in tower.parameters())
    assert tower.training is trainable  # a frozen tower stays in eval mode (no dropout) while the rest trains
    assert not any(parameter.requires_grad for parameter in model.model.ssl_encoder.parameters())


def test_a_trainable_vision_tower_receives_gradients() -> None:
    model = policy(vision_tower_trainable=True).train()
    inputs = dict(tiny_processor()(images=[frame(30), frame(220)], text=["a", "b"]))
    inputs.update(state=torch.randn(2, 2), actions=torch.randn(2, 4, 3))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(3):  # adaLN-Zero: gradients reach the context once the output layer and the gates moved
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()
    grads = [p.grad for name, p in model.named_parameters() if name.startswith("model.vlm.vision_tower.")]
    assert grads and all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


# -- data: cameras and encodings -----------------------------------------------------------------------------------


def write_two_camera_dataset(root: Path, encoding: str) -> tuple[Path, list[np.ndarray]]:
    features = {
        FRONT: {"dtype": "video", "shape": [48, 48, 3], "names": ["height", "width", "channels"]},
        WRIST: {"dtype": "video", "shape": [48, 48, 3], "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": [2], "names": None},
        "action": {"dtype": "float32", "shape": [3], "names": None},
    }
    fronts = [textured(seed) for seed in range(6)]
    with LeRobotV3Writer(root, fps=10, features=features, video_encoding=encoding) as writer:
        writer.add_episode(
            {
                FRONT: np.stack(fronts),
                WRIST: np.stack([255 - image for image in fronts]),
                "observation.state": np.zeros((6, 2), np.float32),
                "action": np.arange(18, dtype=np.float32).reshape(6, 3),
            },
            task="push the box",
        )
    return root, fronts


def test_lossless_encoding_keeps_every_pixel_and_the_default_does_not(tmp_path: Path) -> None:
    root, fronts = write_two_camera_dataset(tmp_path / "lossless", "lossless")
    dataset = LeRobotV3Dataset(root)
    assert dataset.features[FRONT]["info"]["video.codec"] == "h264"
    assert dataset.features[FRONT]["info"]["video.pix_fmt"] == "rgb24"
    chunks = ActionChunkDataset(dataset, chunk_size=4, image_keys=[FRONT, WRIST])
    sample = chunks[2]
    assert len(sample["images"]) == 2
    assert np.array_equal(sample["images"][0], fronts[2]) and np.array_equal(sample["images"][1], 255 - fronts[2])
    lossy_root, _ = write_two_camera_dataset(tmp_path / "lossy", "lerobot")
    lossy = ActionChunkDataset(LeRobotV3Dataset(lossy_root), chunk_size=4, image_keys=[FRONT])[2]["images"][0]
    assert LeRobotV3Dataset(lossy_root).features[FRONT]["info"]["video.codec"] == "av1"
    assert np.abs(lossy.astype(int) - fronts[2]).max() > 8  # CRF 30 + 4:2:0 chroma lose fine detail


def test_codec_round_trip_reproduces_the_training_pixels(tmp_path: Path) -> None:
    """Frame parity: a rendered frame through `codec_round_trip` is what a policy trained on that video saw."""
    root, fronts = write_two_camera_dataset(tmp_path / "lossy", "lerobot")
    stored = ActionChunkDataset(LeRobotV3Dataset(root), chunk_size=4, image_keys=[FRONT])[0]["images"][0]
    raw_error = np.abs(fronts[0].astype(int) - stored).mean()
    trip_error = np.abs(codec_round_trip(fronts[0][None], "lerobot")[0].astype(int) - stored).mean()
    assert trip_error < 0.25 * raw_error  # a keyframe: the round trip lands on (nearly) the stored pixels
    assert np.array_equal(codec_round_trip(np.stack(fronts), "lossless"), np.stack(fronts))
    with pytest.raises(ValueError, match="unknown video encoding"):
        codec_round_trip(fronts[0][None], "jpeg")
    assert set(VIDEO_ENCODINGS) >= {"lerobot", "lossless"}


def test_dataset_cameras_are_checked_by_name(tmp_path: Path) -> None:
    root, _ = write_two_camera_dataset(tmp_path / "data", "lossless")
    with pytest.raises(
        KeyError,
        match=r"observation.images.top.*its cameras: \['observation.images.front', 'observation.images.wrist'\]",
    ):
        ActionChunkDataset(LeRobotV3Dataset(root), image_keys=[FRONT, "observation.images.top"])


# -- frozen feature cache ------------------------------------------------------------------------------------------


def test_feature_cache_gives_the_batches_the_encoders_would(tmp_path: Path) -> None:
    from trainers.feature_cache import FrozenFeatureCache
    from trainers.posttrain import ActionChunkCollator

    root, _ = write_two_camera_dataset(tmp_path / "data", "lossless")
    chunks = ActionChunkDataset(LeRobotV3Dataset(root), chunk_size=4, image_keys=[FRONT, WRIST])
    model = policy(image_keys=[FRONT, WRIST], vision_tower_trainable=False, action_dim=3)
    model.set_normalization_stats(chunks.normalization_stats())
    cache = FrozenFeatureCache(model, tiny_processor(), chunks, cache_dir=tmp_path / "cache", batch_size=4)
    assert cache.path.exists() and set(cache.tensors) == {"ssl_features", "image_features"}
    samples = [chunks[index] for index in (5, 0, 3)]
    plain = ActionChunkCollator(tiny_processor())(samples)
    cached = ActionChunkCollator(tiny_processor(), cache)(samples)
    assert "pixel_values" not in cached and "ssl_pixel_values" not in cached
    assert torch.equal(plain["input_ids"], cached["input_ids"])
    noise, sigma = torch.randn(3, 4, 3), torch.full((3,), 0.5)
    with torch.no_grad():
        expected = model(**plain, noise=noise, sigma=sigma).velocity
        reused = model(**cached, noise=noise, sigma=sigma).velocity
    torch.testing.assert_close(reused, expected, atol=1e-4, rtol=1e-4)
    again = FrozenFeatureCache(model, tiny_processor(), chunks, cache_dir=tmp_path / "cache")
    assert again.path == cache.path  # read back, not rebuilt
    trainable = policy(image_keys=[FRONT, WRIST], vision_tower_trainable=True)
    only_ssl = FrozenFeatureCache(trainable, tiny_processor(), chunks, cache_dir=tmp_path / "cache")
    assert set(only_ssl.tensors) == {"ssl_features"} and only_ssl.path != cache.path


def test_feature_cache_is_invalidated_when_the_data_or_the_encoder_changes(tmp_path: Path) -> None:
    from trainers.feature_cache import FrozenFeatureCache

    model = policy(vision_tower_trainable=True)
    first, _ = write_two_camera_dataset(tmp_path / "a", "lossless")
    key = FrozenFeatureCache(
        model, tiny_processor(), ActionChunkDataset(LeRobotV3Dataset(first), image_keys=[FRONT]), tmp_path / "c"
    ).key
    video = next((first / "videos").rglob("*.mp4"))
    video.write_bytes(video.read_bytes())  # same bytes, new modification time: counted as a change
    changed = FrozenFeatureCache(
        model, tiny_processor(), ActionChunkDataset(LeRobotV3Dataset(first), image_keys=[FRONT]), tmp_path / "c"
    )
    assert changed.key != key
    with torch.no_grad():
        next(model.model.ssl_encoder.parameters()).add_(0.01)
    retrained = FrozenFeatureCache(
        model, tiny_processor(), ActionChunkDataset(LeRobotV3Dataset(first), image_keys=[FRONT]), tmp_path / "c"
    )
    assert retrained.key not in (key, changed.key)
    assert not torch.equal(retrained.tensors["ssl_features"], changed.tensors["ssl_features"])
