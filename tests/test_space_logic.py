"""The Space's pure logic without a browser: projection and overlays, upload validation, the no-model path,
the example builder, metrics against ground truth, and one in-process generation with a tiny saved model."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modeling_jala.hand_jala import JOINTS_XYZ
from modeling_jala.modeling_jala import JalaForMotionPretraining
from tests.fixtures.tiny_jala import save_hub_folder, tiny_jala_config

REPO_ROOT = Path(__file__).resolve().parent.parent
SPACE_DIR = REPO_ROOT / "spaces" / "jala_demo"
# The Space's modules import each other by plain name, as on a Hugging Face Space (app.py's folder on sys.path).
if str(SPACE_DIR) not in sys.path:
    sys.path.insert(0, str(SPACE_DIR))

import build_examples  # noqa: E402
import inference  # noqa: E402
import rendering  # noqa: E402
import validation  # noqa: E402

# ------------------------------------------------------------------------------------------------------------
# Shared builders (the browser test imports them too)
# ------------------------------------------------------------------------------------------------------------


def save_tiny_jala(folder: Path, seed: int = 0) -> Path:
    """A tiny JalaForMotionPretraining saved as a Hub folder (auto_map + code), loadable with AutoModel."""
    torch.manual_seed(seed)
    return save_hub_folder(JalaForMotionPretraining(tiny_jala_config()).eval(), folder)


def build_fixture_examples(root: Path) -> Path:
    """An examples folder with procedural lab/wild clips (fixture source, exact labels; four train clips for the
    mean-motion baseline) and two fake real frames named like the curated ones, built through build_examples.py as
    the Space build does."""
    from dataset_scripts.builder import build_unihand
    from tests.fixtures.unihand_factory import FixtureSource

    repo = root / "repo"
    sources = [
        FixtureSource(num_clips=3, seed=11, domain="lab", split="test_lab", image_size=96),
        FixtureSource(num_clips=3, seed=12, domain="wild", split="test_wild", image_size=96),
        FixtureSource(num_clips=4, seed=13, domain="lab", split="train", image_size=96),
    ]
    build_unihand(repo, sources, progress=False, preview=False)
    hands = root / "hands"
    hands.mkdir()
    photo, ipn = build_examples.REAL_EXAMPLES[0], build_examples.REAL_EXAMPLES[-1]
    Image.new("RGB", (800, 450), (90, 120, 150)).save(hands / photo.file)
    gif_frames = [Image.new("RGB", (282, 240), (255 - 10 * i, 200, 180)) for i in range(12)]
    gif_frames[0].save(hands / ipn.file, save_all=True, append_images=gif_frames[1:], duration=60, loop=0)
    (hands / "SOURCES.md").write_text(
        f"# Sources\n\n### `{photo.file}`\n\n- Origin: https://example.org/photo , path `a.png`\n"
        "- Licence: MIT. File read: `LICENSE` (Copyright (c) Someone)\n\n"
        f"### `{ipn.file}`\n\n- Origin: https://github.com/GibranBenitez/IPN-hand , path `contents/c1.gif`\n"
        "- Licence: CC BY 4.0 (dataset); code MIT.\n"
    )
    out = root / "examples"
    build_examples.build_examples(out, dataset=repo, hands_dir=hands, per_split=2)
    return out


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_jala(tmp_path_factory.mktemp("tiny_jala"))


@pytest.fixture(scope="module")
def examples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_examples(tmp_path_factory.mktemp("space_examples"))


# ------------------------------------------------------------------------------------------------------------
# Projection and rendering
# ------------------------------------------------------------------------------------------------------------


def test_assumed_intrinsics_put_a_60_degree_field_across_the_width() -> None:
    fx, fy, cx, cy = rendering.assumed_intrinsics(640, 480)
    assert fx == fy == pytest.approx(320 / math.tan(math.radians(30)))
    assert (cx, cy) == (319.5, 239.5)
    # A point on the edge of the field of view lands on the outer edge of the image (pixel centre -0.5 / W-0.5).
    edge = rendering.project_points(np.array([math.tan(math.radians(30)), 0.0, 1.0]), (fx, fy, cx, cy))
    assert edge[0] == pytest.approx(639.5)
    with pytest.raises(ValueError, match="fov_deg"):
        rendering.assumed_intrinsics(640, 480, fov_deg=180)


def test_projection_centre_and_points_behind_the_camera() -> None:
    intrinsics = (200.0, 210.0, 111.5, 100.0)
    points = np.array([[0.0, 0.0, 0.5], [0.1, -0.05, 0.5], [0.0, 0.0, -0.2]])
    pixels = rendering.project_points(points, intrinsics)
    np.testing.assert_allclose(pixels[0], [111.5, 100.0])
    np.testing.assert_allclose(pixels[1], [111.5 + 40.0, 100.0 - 21.0])
    assert np.isnan(pixels[2]).all()
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        rendering.project_points(np.zeros((4, 2)), intrinsics)


def test_resizing_moves_projections_with_the_pixels() -> None:
    image = np.zeros((224, 224, 3), np.uint8)
    intrinsics = (202.0, 202.0, 111.5, 111.5)
    display, scaled = rendering.resize_for_display(image, intrinsics, long_side=512)
    assert display.shape == (512, 512, 3)
    point = np.array([0.05, 0.02, 0.6])
    u, v = rendering.project_points(point, intrinsics)
    s = 512 / 224
    np.testing.assert_allclose(rendering.project_points(point, scaled), [s * (u + 0.5) - 0.5, s * (v + 0.5) - 0.5])


def _motion_with_hand_at(depth: float = 0.5, frames: int = 6) -> np.ndarray:
    """(T, 2, 162) with only the right hand present, a flat 21-joint hand moving right."""
    motion = np.zeros((frames, 2, 162), np.float32)
    base = np.stack([np.linspace(-0.04, 0.04, 21), np.linspace(-0.03, 0.03, 21), np.full(21, depth)], axis=1)
    for t in range(frames):
        motion[t, 1, JOINTS_XYZ] = (base + [0.01 * t, 0.0, 0.0]).reshape(-1)
    return motion


def test_joints_from_motion_layout_and_errors() -> None:
    motion = _motion_with_hand_at()
    joints = rendering.joints_from_motion(motion)
    assert joints.shape == (2, 6, 21, 3)
    np.testing.assert_array_equal(joints[1, 3], motion[3, 1, JOINTS_XYZ].reshape(21, 3))
    with pytest.raises(ValueError, match=r"motion must have shape \(T, 2, 162\)"):
        rendering.joints_from_motion(np.zeros((5, 162)))


def test_overlay_frames_draw_the_predicted_hand_in_its_colour(tmp_path: Path) -> None:
    joints = rendering.joints_from_motion(_motion_with_hand_at())
    image = np.full((120, 160, 3), 40, np.uint8)
    intrinsics = rendering.assumed_intrinsics(160, 120)
    frames = rendering.overlay_frames(image, joints, (False, True), intrinsics, joints, (False, True))
    assert len(frames) == 6
    assert frames[0].size == (160, 120 + 24)  # image + caption strip
    wrist = rendering.project_points(joints[1, 0, 0], intrinsics)
    u, v = (int(round(c)) for c in wrist)
    patch = np.asarray(frames[0])[v - 2 : v + 3, u - 2 : u + 3].reshape(-1, 3)
    assert any(tuple(p) == rendering.HAND_COLOURS[1] for p in patch)
    assert not (np.asarray(frames[0])[:120] == rendering.HAND_COLOURS[0]).all(axis=-1).any()  # no left hand
    with pytest.raises(ValueError, match=r"joints must have shape \(2, T, 21, 3\)"):
        rendering.overlay_frames(image, joints[0], (False, True), intrinsics)
    gif = rendering.save_gif(frames, tmp_path / "motion.gif")
    with Image.open(gif) as animation:
        assert animation.n_frames == 6
        delays = []
        for index in range(animation.n_frames):
            animation.seek(index)
            delays.append(animation.info["duration"])
        assert animation.info.get("loop") == 0
        animation.seek(0)
        colours = {tuple(c) for c in np.asarray(animation.convert("RGB")).reshape(-1, 3)}
    assert rendering.HAND_COLOURS[1] in colours  # exact overlay colour survives the shared palette
    assert delays == rendering.gif_durations(6) == [70, 60, 70, 70, 60, 70]  # 15 fps in centisecond steps
    assert sum(rendering.gif_durations(15)) == 1000
    with pytest.raises(ValueError, match="frames is empty"):
        rendering.save_gif([], tmp_path / "empty.gif")


def test_points_behind_the_camera_are_not_drawn() -> None:
    joints = rendering.joints_from_motion(_motion_with_hand_at(depth=-0.5, frames=2))
    image = np.full((60, 80, 3), 40, np.uint8)
    frames = rendering.overlay_frames(image, joints, (False, True), rendering.assumed_intrinsics(80, 60))
    assert (np.asarray(frames[1])[:60] == 40).all()
    # Just in front of the camera, far off to the side: projections beyond any canvas are skipped, not drawn.
    joints[1, :, :, 2] = 0.0100001
    joints[1, :, :, 0] = 1e4
    frames = rendering.overlay_frames(image, joints, (False, True), rendering.assumed_intrinsics(80, 60))
    assert (np.asarray(frames[0])[:60] == 40).all()


def test_trajectory_figure_has_one_wrist_line_per_hand_and_the_ground_truth() -> None:
    joints = rendering.joints_from_motion(_motion_with_hand_at())
    figure = rendering.trajectory_figure(joints, (False, True), joints, (False, True))
    axes = figure.axes[0]
    assert axes.name == "3d"
    labels = [line.get_label() for line in axes.get_lines()]
    assert "right wrist (fingertips thin)" in labels and "right wrist, ground truth" in labels
    assert len(axes.get_lines()) == 1 + len(rendering.FINGERTIPS) + 1
    figure.savefig(Path("/dev/null"), format="png")  # renders without pyplot


# ------------------------------------------------------------------------------------------------------------
# Upload validation
# ------------------------------------------------------------------------------------------------------------


def test_uploads_of_the_wrong_type_or_size_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(validation.InputError, match=r"upload: notes.txt has type '.txt'.*\.jpg"):
        validation.read_first_frame(text)
    big = tmp_path / "big.mp4"
    with big.open("wb") as handle:
        handle.truncate((validation.MAX_UPLOAD_MB + 1) * 2**20)
    with pytest.raises(validation.InputError, match=f"more than the {validation.MAX_UPLOAD_MB} MB"):
        validation.read_first_frame(big)
    with pytest.raises(validation.InputError, match="was not received"):
        validation.read_first_frame(tmp_path / "missing.png")


def test_image_resolution_and_corrupt_files(tmp_path: Path) -> None:
    Image.new("RGB", (32, 200)).save(tmp_path / "small.png")
    with pytest.raises(validation.InputError, match="shorter side must be at least 64 px"):
        validation.read_first_frame(tmp_path / "small.png")
    Image.new("RGB", (5000, 100)).save(tmp_path / "wide.png")
    with pytest.raises(validation.InputError, match="longer side must be at most 4096 px"):
        validation.read_first_frame(tmp_path / "wide.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(validation.InputError, match="could not be read as an image"):
        validation.read_first_frame(tmp_path / "broken.jpg")
    Image.new("RGB", (320, 240), (10, 200, 30)).save(tmp_path / "ok.jpg")
    frame = validation.read_first_frame(tmp_path / "ok.jpg")
    assert frame.kind == "image" and frame.image.shape == (240, 320, 3) and frame.source_size == (320, 240)


def test_videos_give_their_first_frame_and_long_ones_are_refused(tmp_path: Path) -> None:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    frames = [Image.new("RGB", (96, 80), colour) for colour in colours]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    first = validation.read_first_frame(tmp_path / "clip.gif")
    assert first.kind == "video" and first.image.shape == (80, 96, 3)
    np.testing.assert_allclose(first.image.reshape(-1, 3).mean(0), colours[0], atol=8)
    assert first.duration_s == pytest.approx(0.3, abs=0.05)
    frames[0].save(tmp_path / "long.gif", save_all=True, append_images=frames[1:2], duration=16000, loop=0)
    with pytest.raises(validation.InputError, match="videos may last at most 30 s"):
        validation.read_first_frame(tmp_path / "long.gif")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(validation.InputError, match="could not be decoded as a video"):
        validation.read_first_frame(tmp_path / "broken.mp4")


def test_instruction_hands_and_chunk_checks() -> None:
    assert validation.check_instruction("  pick  up\nthe cup ") == "pick up the cup"
    with pytest.raises(validation.InputError, match="instruction: type what the hand should do"):
        validation.check_instruction("   ")
    with pytest.raises(validation.InputError, match="keep it under 300"):
        validation.check_instruction("x" * 301)
    assert validation.check_hands("both") == ("left", "right")
    with pytest.raises(validation.InputError, match="hands: choose one of right, left, both"):
        validation.check_hands("three")
    assert validation.check_num_chunks(3.0) == 3
    for bad in (0, 9, 2.5, None):
        with pytest.raises(validation.InputError, match="number of chunks"):
            validation.check_num_chunks(bad)
    assert validation.check_decoding(16.0, 4) == (16, 4)
    with pytest.raises(validation.InputError, match="decoding passes: choose a whole number from 1 to 64"):
        validation.check_decoding(1000, 4)
    with pytest.raises(validation.InputError, match="ensemble: choose a whole number from 1 to 8"):
        validation.check_decoding(8, 0)


# ------------------------------------------------------------------------------------------------------------
# Model discovery and the no-model path
# ------------------------------------------------------------------------------------------------------------


def test_model_path_resolution_order(tmp_path: Path) -> None:
    assert inference.resolve_model_path(str(tmp_path), {"JALA_MODEL": "/elsewhere"}) == str(tmp_path)
    assert inference.resolve_model_path(None, {"JALA_MODEL": str(tmp_path)}) == str(tmp_path)
    default = inference.resolve_model_path(None, {})
    assert default == str(inference.REPO_ROOT / "outputs" / "quickstart" / "jala")


def test_checkpoint_problems_are_named(tmp_path: Path) -> None:
    offline = {"HF_HUB_OFFLINE": "1"}
    assert "does not exist" in inference.checkpoint_problem(str(tmp_path / "nope"), offline)
    assert "does not exist" in inference.checkpoint_problem("someone/jala-model", offline)
    assert inference.checkpoint_problem("someone/jala-model", {"HF_HUB_OFFLINE": "0"}) is None
    assert "no config.json" in inference.checkpoint_problem(str(tmp_path), offline)
    (tmp_path / "config.json").write_text("{}")
    assert "no *.safetensors" in inference.checkpoint_problem(str(tmp_path), offline)


def test_missing_model_gives_a_message_with_the_command(tmp_path: Path) -> None:
    with pytest.raises(inference.ModelUnavailable) as caught:
        inference.load_model(str(tmp_path / "missing"))
    message = str(caught.value)
    assert "No JALA checkpoint loaded" in message and "make quickstart" in message
    assert "--model PATH" in message and "never falls back to random weights" in message


def test_app_without_a_model_disables_generate(tmp_path: Path) -> None:
    gr = pytest.importorskip("gradio")
    import app

    state = app.load_state(str(tmp_path / "missing"), tmp_path / "no_examples")
    assert state.loaded is None and "make quickstart" in state.model_notice
    assert "build_examples.py" in state.examples_notice
    demo = app.build_demo(state)
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "generate")
    assert button.interactive is False and "no model" in button.value
    notice = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "notice")
    assert "make quickstart" in notice.value and notice.visible
    with pytest.raises(gr.Error, match="No JALA checkpoint is loaded"):
        app.run_generation(state, {"kind": "upload", "path": "x.png"}, "pick up the cup", "right", 1, 0, 4, 2, True)


def test_old_outputs_are_pruned(tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    import app

    old, new = tmp_path / "motion_old.gif", tmp_path / "motion_new.gif"
    old.write_bytes(b"GIF89a")
    new.write_bytes(b"GIF89a")
    os.utime(old, (0, 0))
    assert app.prune_outputs(tmp_path, max_age_s=3600) == 1
    assert not old.exists() and new.exists()


def test_space_card_and_requirements_are_valid() -> None:
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(SPACE_DIR / "README.md").data.to_dict()
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "license"):
        assert card.get(key), key
    assert (card["sdk"], card["app_file"], card["python_version"]) == ("gradio", "app.py", "3.11")
    assert (SPACE_DIR / card["app_file"]).is_file()
    requirements = (SPACE_DIR / "requirements.txt").read_text()
    for package in ("torch", "transformers", "gradio", "matplotlib", "av", "jala @ git+"):
        assert package in requirements, package
    assert "examples/" in (SPACE_DIR / ".gitignore").read_text()


def test_cli_options() -> None:
    pytest.importorskip("gradio")
    import app

    args = app.parse_args(["--model", "some/folder", "--port", "7999", "--concurrency", "2"])
    assert (args.model, args.port, args.concurrency, args.max_queue) == ("some/folder", 7999, 2, 20)


# ------------------------------------------------------------------------------------------------------------
# Examples and metrics
# ------------------------------------------------------------------------------------------------------------


def test_build_examples_writes_index_frames_labels_and_attribution(examples_dir: Path) -> None:
    index = json.loads((examples_dir / "index.json").read_text())
    kinds = [entry["kind"] for entry in index["examples"]]
    assert kinds == ["lab", "lab", "wild", "wild", "real", "real"]
    examples, notice = inference.load_examples(examples_dir)
    assert notice is None and len(examples) == 6
    lab = examples[0]
    truth = lab.ground_truth()
    assert truth.shape == (lab.num_frames, 2, 162) and lab.intrinsics is not None
    assert Image.open(lab.image_path).size == (96, 96)
    mean_motion = lab.mean_motion()  # the per-frame mean of the repo's four train clips, stored at build time
    assert mean_motion.shape == (2, lab.num_frames, 21, 3) and np.isfinite(mean_motion).all()
    assert index["examples"][0]["mean_motion_train_clips"] == 4
    from trainers.motion_baselines import MeanMotionBaseline, load_training_rows

    expected = MeanMotionBaseline.fit(load_training_rows(examples_dir.parent / "repo"))
    np.testing.assert_allclose(mean_motion[1], expected.predict({}, 1, lab.num_frames), atol=1e-6)
    ipn = examples[-1]
    assert ipn.intrinsics is None and not ipn.has_ground_truth and ipn.mean_motion() is None
    assert Image.open(ipn.image_path).size == (240, 180)  # caption band cropped
    attribution = (examples_dir / "ATTRIBUTION.md").read_text()
    assert "CC BY 4.0" in attribution and "Benitez-Garcia" in attribution and "frame 9 extracted" in attribution
    assert "MIT" in attribution


def test_missing_or_broken_examples_give_notices(tmp_path: Path, examples_dir: Path) -> None:
    examples, notice = inference.load_examples(tmp_path)
    assert examples == [] and "No examples built" in notice and "build_examples.py" in notice
    index = json.loads((examples_dir / "index.json").read_text())
    index["examples"][0]["image"] = "gone.jpg"
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in examples_dir.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "index.json").write_text(json.dumps(index))
    examples, notice = inference.load_examples(broken)
    assert len(examples) == 5 and "Skipped 1 broken example" in notice


def test_metrics_compare_overlapping_frames_of_shared_hands() -> None:
    truth = rendering.joints_from_motion(_motion_with_hand_at(frames=10))
    truth[0] = truth[1] + [0.2, 0.0, 0.0]  # give the left hand a pose too
    prediction = truth[:, :6].copy()
    rows = inference.ground_truth_metrics(prediction, (True, True), truth, (True, True))
    assert [row[0] for row in rows] == ["left", "right", "both"]
    assert all(row[1] == 6 for row in rows)
    assert all(value == 0.0 for row in rows for value in row[2:4])
    shifted = prediction.copy()
    shifted[1] += [0.01, 0.0, 0.0]
    right = inference.ground_truth_metrics(shifted, (False, True), truth, (False, True))
    assert len(right) == 1 and right[0][2] == pytest.approx(10.0) and right[0][3] == pytest.approx(0.0, abs=1e-3)
    assert inference.ground_truth_metrics(prediction, (True, False), truth, (False, True)) == []


def test_metrics_box_scores_the_mean_motion_on_the_model_hands_and_frames() -> None:
    truth = rendering.joints_from_motion(_motion_with_hand_at(frames=10))
    prediction = truth[:, :6].copy()
    baseline = truth + [0.0, 0.02, 0.0]  # a 20 mm offset, as long as the clip (longer than the prediction)
    rows = inference.comparison_metrics(prediction, (False, True), truth, (False, True), {"mean motion": baseline})
    assert [row[:3] for row in rows] == [["JALA", "right", 6], ["mean motion", "right", 6]]
    assert rows[0][3] == 0.0 and rows[1][3] == pytest.approx(20.0)
    assert (
        inference.comparison_metrics(prediction, (True, False), truth, (False, True), {"mean motion": baseline}) == []
    )
    with pytest.raises(ValueError, match="fewer than the frames compared"):
        inference.comparison_metrics(prediction, (False, True), truth, (False, True), {"short": baseline[:, :3]})


# ------------------------------------------------------------------------------------------------------------
# One generation through the app's handler, in process
# ------------------------------------------------------------------------------------------------------------


def test_generation_handler_returns_animation_plot_and_metrics(tiny_model_dir: Path, examples_dir: Path) -> None:
    gr = pytest.importorskip("gradio")
    import app

    state = app.load_state(str(tiny_model_dir), examples_dir)
    assert state.loaded is not None and state.model_notice is None
    summary = dict(state.loaded.summary)
    assert summary["class"] == "JalaForMotionPretraining" and summary["variant"] == "jala"
    assert str(tiny_model_dir) in summary["checkpoint"]
    selected = app.select_example(state, 0)
    assert selected[1] == state.examples[0].instruction
    gif, figure, metrics, status = app.run_generation(
        state, selected[4], selected[1], state.examples[0].hands, 1, 0, 2, 1, True
    )
    with Image.open(gif) as animation:
        assert animation.n_frames == 15
    assert figure.axes[0].name == "3d"
    assert len(metrics) >= 2 and np.isfinite(metrics["MPJPE (mm)"].astype(float)).all()
    assert metrics["predictor"].iloc[0] == "JALA" and metrics["predictor"].iloc[-1] == "mean motion"
    assert "'mean motion' is the baseline" in status
    assert "Generated **15 frames**" in status
    with pytest.raises(gr.Error, match="instruction: type what the hand should do"):
        app.run_generation(state, selected[4], " ", "right", 1, 0, 2, 1, True)
