"""The wrist-waypoint auxiliary (trainers/waypoint_auxiliary.py): the wrist it regresses is the chunk's last frame's,
only labelled clips' existing chunks are scored, and the loss reaches h and its head."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from modeling_jala.hand_jala import WRIST_TRANSL
from trainers.waypoint_auxiliary import WaypointAuxiliary, chunk_end_wrists


def _motion(frames: int) -> torch.Tensor:
    """(1, 2, frames, 162) motion whose wrist x is the frame index and y the hand index."""
    motion = torch.zeros(1, 2, frames, 162)
    motion[..., WRIST_TRANSL.start] = torch.arange(frames, dtype=torch.float32)
    motion[:, 1, :, WRIST_TRANSL.start + 1] = 1.0
    return motion


def test_chunk_end_wrists_read_each_chunks_last_frame_within_the_clip() -> None:
    wrists = chunk_end_wrists(_motion(30), torch.tensor([20]), num_chunks=2)
    assert wrists.shape == (1, 2, 2, 3)
    assert wrists[0, :, 0, 0].tolist() == [14.0, 19.0]  # chunk 0 ends at frame 14; chunk 1 at the clip's last, 19
    assert wrists[0, 0, :, 1].tolist() == [0.0, 1.0]  # (B, N, hand, xyz): the right hand's y is 1


def test_only_labelled_existing_chunks_are_scored_and_the_loss_trains_h() -> None:
    torch.manual_seed(0)
    auxiliary = WaypointAuxiliary(hidden_size=4, weight=2.0)
    h = torch.randn(1, 2, 2, 3, 4, requires_grad=True)  # (B, N, 2, K, H)
    slot_mask = torch.tensor([[[True, False], [True, False]]])  # the left hand acts, in both chunks
    outputs = SimpleNamespace(predictive_embeddings=h, slot_mask=slot_mask)
    inputs = {"motion": _motion(30), "frame_lengths": torch.tensor([30]), "labelled": torch.tensor([True])}
    terms = auxiliary.losses(outputs, inputs)
    assert float(terms["loss"]) == pytest.approx(2.0 * float(terms["waypoint_loss"]))
    terms["loss"].backward()
    assert h.grad[0, :, 0].abs().sum() > 0 and h.grad[0, :, 1].abs().sum() == 0  # the absent hand is not scored
    assert all(parameter.grad is not None for parameter in auxiliary.parameters())
    unlabelled = auxiliary.losses(outputs, {**inputs, "labelled": torch.tensor([False])})
    assert float(unlabelled["loss"]) == 0.0
    with pytest.raises(ValueError, match="drop --waypoint_weight"):
        auxiliary.losses(outputs, {"labelled": torch.tensor([True])})
    with pytest.raises(ValueError, match="--waypoint_weight must be > 0"):
        WaypointAuxiliary(hidden_size=4, weight=0.0)
