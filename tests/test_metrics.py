"""Hand-motion metrics: hand-built cases with known answers, masks, input errors and the evaluate module."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch

from trainers.metrics import (
    JALA_HAND_MOTION_METRIC_PATH,
    hand_motion_metrics,
    mde,
    mde_per_sequence,
    mpjpe,
    mwte,
    pa_mpjpe,
    procrustes_align,
)

ATOL_MM = 1e-6


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def random_rotation(gen: torch.Generator) -> torch.Tensor:
    """A proper rotation from the QR of a Gaussian matrix (det fixed to +1)."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def hand_sequences(batch: int = 3, frames: int = 6, seed: int = 0) -> torch.Tensor:
    """(B, T, 21, 3) hand-sized joint clouds (~5 cm spread) whose wrist moves ~10 cm over the clip."""
    gen = torch.Generator().manual_seed(seed)
    shape = 0.05 * torch.randn(batch, 1, 21, 3, generator=gen, dtype=torch.float64)
    shape[:, :, 0] = 0.0  # wrist at the hand's origin
    wiggle = 0.003 * torch.randn(batch, frames, 21, 3, generator=gen, dtype=torch.float64)
    velocity = 0.02 * torch.randn(batch, 1, 1, 3, generator=gen, dtype=torch.float64)
    steps = torch.arange(frames, dtype=torch.float64).view(1, frames, 1, 1)
    return shape + wiggle + velocity * steps


def horn_align(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent reference: Horn (1987) unit-quaternion rotation, then least-squares scale onto y."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = xc.T @ yc
    n = np.array(
        [
            [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
            [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
            [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
            [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
        ]
    )
    w, v = np.linalg.eigh(n)
    q0, qx, qy, qz = v[:, np.argmax(w)]
    rot = np.array(
        [
            [1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - q0 * qz), 2 * (qx * qz + q0 * qy)],
            [2 * (qx * qy + q0 * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - q0 * qx)],
            [2 * (qx * qz - q0 * qy), 2 * (qy * qz + q0 * qx), 1 - 2 * (qx * qx + qy * qy)],
        ]
    )
    rotated = xc @ rot.T
    scale = (rotated * yc).sum() / (xc * xc).sum()
    return scale * rotated + y.mean(0)


# --------------------------------------------------------------------------------------------------
# MPJPE / PA-MPJPE / MWTE / MDE on hand-built cases
# --------------------------------------------------------------------------------------------------
def test_identical_inputs_score_zero():
    joints = hand_sequences()
    results = hand_motion_metrics(joints, joints.clone())
    assert set(results) == {"mpjpe_mm", "pa_mpjpe_mm", "mwte_mm", "mde_deg"}
    assert all(isinstance(v, float) for v in results.values())
    for name, value in results.items():
        assert value == pytest.approx(0.0, abs=1e-6), name


def test_constant_offset_of_10mm():
    target = hand_sequences()
    offset = torch.tensor([0.006, -0.008, 0.0], dtype=torch.float64)  # |offset| = 10 mm
    results = hand_motion_metrics(target + offset, target)
    assert results["mpjpe_mm"] == pytest.approx(10.0, abs=ATOL_MM)
    assert results["mwte_mm"] == pytest.approx(10.0, abs=ATOL_MM)
    assert results["pa_mpjpe_mm"] == pytest.approx(0.0, abs=ATOL_MM)
    assert results["mde_deg"] == pytest.approx(0.0, abs=1e-5)  # same displacement


def test_mpjpe_hand_computed_and_pooled_over_frames():
    target = torch.zeros(2, 3, 2, 3, dtype=torch.float64)
    pred = target.clone()
    pred[0, 0, 0] = torch.tensor([0.003, 0.004, 0.0])  # 5 mm on one joint of one frame
    pred[1, 1, 1] = torch.tensor([0.0, 0.0, 0.012])  # 12 mm, in a frame that is masked out below
    assert float(mpjpe(pred, target)) == pytest.approx((5 + 12) / 12)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    # Pooled over the 4 valid frames x 2 joints, not averaged per sequence ((5/6 + 0) / 2).
    assert float(mpjpe(pred, target, mask)) == pytest.approx(5 / 8)


def test_procrustes_recovers_known_similarity():
    gen = torch.Generator().manual_seed(1)
    pred = 0.05 * torch.randn(4, 21, 3, generator=gen, dtype=torch.float64)
    rot = torch.stack([random_rotation(gen) for _ in range(4)])
    scale = torch.tensor([0.5, 1.0, 1.7, 3.0], dtype=torch.float64).view(4, 1, 1)
    shift = torch.randn(4, 1, 3, generator=gen, dtype=torch.float64)
    target = scale * pred @ rot.transpose(-2, -1) + shift
    torch.testing.assert_close(procrustes_align(pred, target), target, atol=1e-12, rtol=0)
    assert float(pa_mpjpe(pred, target)) == pytest.approx(0.0, abs=1e-9)
    assert float(mpjpe(pred, target)) > 100.0  # the raw error is large, so the test can fail


def test_pa_mpjpe_closed_form_for_stretched_octahedron():
    # pred: octahedron (+-1, 0, 0), (0, +-1, 0), (0, 0, +-1); target: the same stretched x2 along x.
    # By symmetry R = I and t = 0; the least-squares scale is s = sum(x.y) / sum(|x|^2) = 8 / 6 = 4/3.
    # Errors: |4/3 - 2| = 2/3 for the two x points, |4/3 - 1| = 1/3 for the four others -> mean 4/9.
    unit = 0.01  # metres, so the expected value is 4/9 cm = 40/9 mm
    octahedron = torch.cat([torch.eye(3), -torch.eye(3)]).to(torch.float64)
    pred = unit * octahedron
    target = pred * torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)
    expected_mm = 4 / 9 * unit * 1000
    assert float(pa_mpjpe(pred, target)) == pytest.approx(expected_mm, rel=1e-9)
    # Invariance: moving / turning / resizing pred changes nothing; resizing target by k scales by k.
    gen = torch.Generator().manual_seed(2)
    rot_p, rot_t = random_rotation(gen), random_rotation(gen)
    moved_pred = 0.3 * pred @ rot_p.T + torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    moved_target = 2.5 * target @ rot_t.T + torch.tensor([-1.0, 0.5, 0.0], dtype=torch.float64)
    assert float(pa_mpjpe(moved_pred, target)) == pytest.approx(expected_mm, rel=1e-9)
    assert float(pa_mpjpe(pred, moved_target)) == pytest.approx(2.5 * expected_mm, rel=1e-9)


def test_procrustes_matches_independent_quaternion_solution():
    gen = torch.Generator().manual_seed(3)
    pred = 0.05 * torch.randn(5, 21, 3, generator=gen, dtype=torch.float64)
    target = 1.3 * pred @ random_rotation(gen).T + 0.01 * torch.randn(5, 21, 3, generator=gen)
    aligned = procrustes_align(pred, target).numpy()
    for i in range(5):
        np.testing.assert_allclose(aligned[i], horn_align(pred[i].numpy(), target[i].numpy()), atol=1e-10)


def test_reflection_is_not_aligned_away():
    gen = torch.Generator().manual_seed(4)
    pred = 0.05 * torch.randn(21, 3, generator=gen, dtype=torch.float64)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    target = pred @ mirror  # a left hand against a right hand: no proper rotation maps one onto the other
    aligned = procrustes_align(pred, target)
    # Recover the linear part of the fitted map (aligned_c = pred_c @ A): s * R^T must have det > 0.
    pred_c, aligned_c = pred - pred.mean(0), aligned - aligned.mean(0)
    linear = torch.linalg.lstsq(pred_c, aligned_c).solution
    assert float(torch.linalg.det(linear)) > 0
    assert float(pa_mpjpe(pred, target)) > 5.0  # a reflection would have given 0
    np.testing.assert_allclose(aligned.numpy(), horn_align(pred.numpy(), target.numpy()), atol=1e-10)


def test_procrustes_degenerate_frames_stay_finite():
    target = 0.05 * torch.randn(21, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    collapsed = torch.full((21, 3), 0.2, dtype=torch.float64)  # every joint at one point
    aligned = procrustes_align(collapsed, target)
    torch.testing.assert_close(aligned, target.mean(0).expand(21, 3))  # the optimum: target's centroid
    assert torch.isfinite(procrustes_align(target, collapsed)).all()
    assert torch.isfinite(procrustes_align(torch.zeros(21, 3), torch.zeros(21, 3))).all()
    line = torch.linspace(0, 0.1, 21, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, 0.0])
    assert float(pa_mpjpe(line, 2 * line + 0.3)) == pytest.approx(0.0, abs=1e-9)  # collinear joints


def test_mwte_hand_computed():
    target = torch.zeros(1, 3, 3, dtype=torch.float64)
    pred = torch.tensor([[[0.003, 0.004, 0.0], [0.0, 0.0, -0.002], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    assert float(mwte(pred, target)) == pytest.approx((5 + 2 + 0) / 3)
    assert float(mwte(pred, target, torch.tensor([[True, True, False]]))) == pytest.approx(3.5)


def _wrists(displacement: list[float], frames: int = 4) -> torch.Tensor:
    """(frames, 3) wrist path from a start point along a wavy path to start + displacement."""
    start = torch.tensor([0.1, -0.2, 0.5], dtype=torch.float64)
    s = torch.linspace(0, 1, frames, dtype=torch.float64)[:, None]
    detour = torch.sin(math.pi * s) * torch.tensor([0.0, 0.0, 0.05], dtype=torch.float64)
    return start + s * torch.tensor(displacement, dtype=torch.float64) + detour


@pytest.mark.parametrize(
    ("pred_disp", "expected_deg"),
    [
        ([0.2, 0.0, 0.0], 0.0),  # same direction, double length
        ([-0.1, 0.0, 0.0], 180.0),
        ([0.0, 0.1, 0.0], 90.0),
        ([0.0, 0.0, -0.3], 90.0),
        ([0.1, 0.1, 0.0], 45.0),
        ([0.0, 0.0, 0.0], 90.0),  # predicted no motion: undefined direction scores 90
    ],
)
def test_mde_known_angles(pred_disp, expected_deg):
    target = _wrists([0.1, 0.0, 0.0])
    pred = _wrists(pred_disp)
    assert float(mde(pred, target)) == pytest.approx(expected_deg, abs=1e-6)


def test_mde_averages_sequences_and_excludes_static_ones():
    target = torch.stack([_wrists([0.1, 0, 0]), _wrists([0.1, 0, 0]), _wrists([0.0, 0.0005, 0])])
    pred = torch.stack([_wrists([0.1, 0, 0]), _wrists([-0.1, 0, 0]), _wrists([0.1, 0, 0])])
    per_seq = mde_per_sequence(pred, target)
    assert per_seq[:2].tolist() == pytest.approx([0.0, 180.0], abs=1e-6)
    assert math.isnan(per_seq[2])  # true displacement 0.5 mm < eps_m = 1 mm: excluded
    assert float(mde(pred, target)) == pytest.approx(90.0, abs=1e-6)  # mean of the two kept
    assert float(mde_per_sequence(pred, target, eps_m=1e-4)[2]) == pytest.approx(90.0, abs=1e-6)
    assert math.isnan(float(mde(pred[2:], target[2:])))  # everything excluded -> NaN
    one_frame = hand_motion_metrics(torch.zeros(1, 21, 3), torch.zeros(1, 21, 3))
    assert math.isnan(one_frame["mde_deg"]) and one_frame["mpjpe_mm"] == 0.0


# --------------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------------
def test_padding_frames_do_not_change_results():
    joints = hand_sequences(batch=2, frames=5, seed=6)
    pred = joints + 0.004 * torch.randn(joints.shape, generator=torch.Generator().manual_seed(7))
    pred[1, :, :, 0] += 0.1 * torch.arange(5.0)[:, None]  # sequence 1 also goes the wrong way
    lengths = [5, 3]
    expected = {
        "mpjpe_mm": float(mpjpe(torch.cat([pred[0], pred[1, :3]]), torch.cat([joints[0], joints[1, :3]]))),
        "mde_deg": float(
            torch.nanmean(torch.stack([mde(pred[i, :n, 0], joints[i, :n, 0]) for i, n in enumerate(lengths)]))
        ),
    }
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    clean = hand_motion_metrics(pred, joints, mask)
    for garbage in (math.nan, math.inf, 1e6, -3.0):
        padded_pred, padded_target = pred.clone(), joints.clone()
        padded_pred[1, 3:], padded_target[1, 3:] = garbage, -garbage
        results = hand_motion_metrics(padded_pred, padded_target, mask)
        assert results == pytest.approx(clean, abs=1e-9), garbage
    assert clean["mpjpe_mm"] == pytest.approx(expected["mpjpe_mm"], abs=1e-9)
    assert clean["mde_deg"] == pytest.approx(expected["mde_deg"], abs=1e-9)
    assert clean != pytest.approx(hand_motion_metrics(pred, joints), abs=1e-3)  # the mask matters


def test_mde_uses_first_and_last_valid_frames():
    target = _wrists([0.1, 0.0, 0.0], frames=6)
    pred = target + torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64)  # same motion, elsewhere
    pred[0] += torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64)  # leading frame masked out
    pred[-1] -= torch.tensor([5.0, 0.0, 0.0], dtype=torch.float64)  # trailing frame masked out
    mask = torch.tensor([False, True, True, True, True, False])
    assert float(mde(pred, target, mask)) == pytest.approx(0.0, abs=1e-6)
    assert float(mde(pred, target)) > 90.0
    int_mask = mask.to(torch.int64)  # 0/1 integers are accepted too
    assert float(mwte(pred, target, int_mask)) == pytest.approx(300.0, abs=1e-9)


def test_no_valid_frame_gives_nan():
    joints = hand_sequences(batch=1, frames=2)
    results = hand_motion_metrics(joints, joints, torch.zeros(1, 2, dtype=torch.bool))
    assert all(math.isnan(v) for v in results.values())


def test_numpy_and_list_inputs_match_torch():
    joints = hand_sequences(batch=2, frames=4, seed=8)
    pred = joints + 0.002
    reference = hand_motion_metrics(pred, joints)
    assert hand_motion_metrics(pred.numpy(), joints.numpy()) == pytest.approx(reference)
    assert hand_motion_metrics(pred.float().tolist(), joints.float().tolist()) == pytest.approx(reference, abs=1e-3)


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mpjpe(torch.zeros(4, 21, 3), torch.zeros(5, 21, 3)), r"`pred` and `target`.*same shape"),
        (
            lambda: mpjpe(torch.zeros(4, 21, 2), torch.zeros(4, 21, 2)),
            r"`pred` must have shape \(\.\.\., J, 3\)",
        ),
        (lambda: mwte(torch.zeros(4, 3), torch.zeros(4)), r"`target_wrist` must have shape \(\.\.\., T, 3\)"),
        (
            lambda: mpjpe(torch.zeros(4, 21, 3), torch.zeros(4, 21, 3), torch.ones(5, dtype=torch.bool)),
            r"`mask` must have shape \(4,\)",
        ),
        (
            lambda: mpjpe(torch.zeros(4, 21, 3), torch.zeros(4, 21, 3), torch.ones(4)),
            r"`mask` must be booleans",
        ),
        (
            lambda: mpjpe(torch.zeros(4, 21, 3), torch.full((4, 21, 3), math.nan)),
            r"`target` has 252 non-finite",
        ),
        (lambda: mde(torch.zeros(4, 3), torch.zeros(4, 3), eps_m=-1.0), r"`eps_m` must be"),
        (
            lambda: procrustes_align(torch.full((21, 3), math.inf), torch.zeros(21, 3)),
            r"`pred` has non-finite",
        ),
        (
            lambda: hand_motion_metrics(torch.zeros(2, 4, 20, 3), torch.zeros(2, 4, 20, 3)),
            r"`pred_joints` must have shape \(\.\.\., T, 21, 3\)",
        ),
        (lambda: hand_motion_metrics(torch.zeros(21, 3), torch.zeros(21, 3)), r"\(\.\.\., T, 21, 3\)"),
        (lambda: mpjpe("left hand", torch.zeros(4, 21, 3)), r"`pred` must be a tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------------------------------
# evaluate module
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hand_motion_metric(tmp_path_factory):
    """`evaluate.load` of the local folder, with a private data cache and sockets disabled."""
    import evaluate

    attempts: list[tuple] = []

    def no_network(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"test_metrics: network access attempted to {address}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", no_network)
        # The module is copied into evaluate's own modules cache, as for any user: a private HF_MODULES_CACHE would
        # not help, because `evaluate_modules` resolves through sys.path to whichever cache evaluate saw first.
        metric = evaluate.load(
            JALA_HAND_MOTION_METRIC_PATH,
            keep_in_memory=True,
            cache_dir=str(tmp_path_factory.mktemp("metrics")),
        )
    assert attempts == [], f"evaluate tried to reach the network for a local path: {attempts}"
    return metric


def test_evaluate_module_matches_plain_functions(hand_motion_metric):
    assert "2602.21736" in hand_motion_metric.info.citation
    assert set(hand_motion_metric.info.features) == {"predictions", "references"}
    joints = hand_sequences(batch=3, frames=5, seed=9)
    pred = joints + 0.003 * torch.randn(joints.shape, generator=torch.Generator().manual_seed(10))
    lengths = [5, 2, 4]
    mask = torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]
    expected = hand_motion_metrics(pred, joints, mask)
    predictions = [pred[0].numpy(), pred[1, :2].tolist(), pred[2, :4]]  # arrays, lists and tensors mixed
    references = [joints[i, :n].numpy() for i, n in enumerate(lengths)]
    results = hand_motion_metric.compute(predictions=predictions, references=references)
    assert results == pytest.approx(expected, rel=1e-12, abs=1e-9)
    assert results != pytest.approx(hand_motion_metrics(pred, joints), abs=1e-3)  # lengths were respected

    hand_motion_metric.add_batch(predictions=predictions[:2], references=references[:2])
    hand_motion_metric.add(prediction=predictions[2], reference=references[2])
    assert hand_motion_metric.compute() == pytest.approx(expected, rel=1e-12, abs=1e-9)
    huge_eps = hand_motion_metric.compute(predictions=predictions, references=references, eps_m=10.0)
    assert math.isnan(huge_eps["mde_deg"])  # the compute kwarg reaches MDE
    assert huge_eps["mpjpe_mm"] == pytest.approx(expected["mpjpe_mm"], rel=1e-12)


def test_evaluate_module_rejects_bad_shapes(hand_motion_metric):
    good = np.zeros((3, 21, 3))
    with pytest.raises(ValueError, match=r"references\[0\] must have the shape"):
        hand_motion_metric.compute(predictions=[good], references=[np.zeros((2, 21, 3))])
    with pytest.raises(ValueError, match=r"predictions\[0\] must have shape \(T >= 1, 21, 3\)"):
        hand_motion_metric.compute(predictions=[np.zeros((3, 20, 3))], references=[np.zeros((3, 20, 3))])
