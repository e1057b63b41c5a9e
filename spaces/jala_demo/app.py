"""JALA Space: predict 3D hand motion from one frame and an instruction, in the browser.

    python spaces/jala_demo/app.py                                  # outputs/quickstart/jala, port 7860
    python spaces/jala_demo/app.py --model PATH --port 7861
    JALA_MODEL=PATH python spaces/jala_demo/app.py

This file only wires the UI; the logic lives in `inference.py` (loading, generation, metrics), `rendering.py`
(projection, overlay GIF, 3D plot) and `validation.py` (upload checks), which are unit-tested. The model is
loaded once at start-up with `AutoModel.from_pretrained(path, trust_remote_code=True)`; without a checkpoint
the page says how to create one and the Generate button stays disabled (never random weights).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a demo server

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

# isort: split
# Sibling modules, imported by plain name: on a Hugging Face Space (and with `python spaces/jala_demo/app.py`)
# this file's folder is on sys.path.
import inference
import rendering
import validation

logger = logging.getLogger("jala.space")

UPLOAD_MAX_SIDE = 1024  # uploads are shrunk to this before anything else: the model reads a few hundred pixels
OUTPUT_MAX_AGE_S = 3600  # GIFs and upload frames older than this are deleted (a Space runs for weeks)
FOV_NOTE = (
    f"No camera calibration for uploads and real frames: the overlay projects the predicted camera-frame joints "
    f"with an assumed pinhole of {rendering.DEFAULT_FOV_DEG:.0f}° horizontal field of view centred in the image. "
    "Procedural examples use their exact camera intrinsics."
)


@dataclass
class SpaceState:
    """What the server holds for every visitor: the model (or why there is none) and the example catalogue."""

    model_path: str
    loaded: inference.LoadedModel | None
    model_notice: str | None
    examples: list[inference.Example]
    examples_notice: str | None
    examples_dir: Path
    output_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jala_space_")))

    def example(self, name: str) -> inference.Example:
        for example in self.examples:
            if example.name == name:
                return example
        raise gr.Error(f"example {name!r} is not in the catalogue; reload the page.")


def load_state(model_path: str, examples_dir: Path) -> SpaceState:
    """Load the model and the examples; failures become notices on the page, not a crash."""
    try:
        loaded, notice = inference.load_model(model_path), None
    except inference.ModelUnavailable as error:
        loaded, notice = None, str(error)
        logger.warning("no model: %s", error)
    examples, examples_notice = inference.load_examples(examples_dir)
    return SpaceState(model_path, loaded, notice, examples, examples_notice, examples_dir)


# ------------------------------------------------------------------------------------------------------------
# Event handlers (thin: validate, call the pure functions, format)
# ------------------------------------------------------------------------------------------------------------


def prune_outputs(folder: Path, max_age_s: float = OUTPUT_MAX_AGE_S) -> int:
    """Delete this server's old GIFs and upload frames, so that a long-running Space does not fill its disk."""
    cutoff = time.time() - max_age_s
    removed = 0
    for path in folder.glob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _source_note(example: inference.Example) -> str:
    if example.kind == "real":
        return f"**{example.title}** ({example.credit}). No ground truth. {FOV_NOTE}"
    frames = f"{example.num_frames} frames" if example.num_frames else "clip"
    return (
        f"**{example.title}**: held-out procedural {example.kind} scene with exact labels ({frames}); metrics are "
        "computed against them. Overlay uses the scene's camera intrinsics."
    )


def select_example(state: SpaceState, index: int) -> tuple[Any, ...]:
    """Gallery click -> preview, instruction, hands, chunks, the selection state and the source note."""
    example = state.examples[index]
    selection = {"kind": "example", "name": example.name}
    return (
        str(example.image_path),
        example.instruction,
        example.hands,
        example.suggested_chunks(),
        selection,
        _source_note(example),
    )


def receive_upload(state: SpaceState, path: str | None) -> tuple[Any, ...]:
    """Validate an upload and keep its first frame (shrunk) as a PNG the generate step reads back."""
    if not path:
        return gr.update(), gr.update(), gr.update()
    try:
        first = validation.read_first_frame(path)
    except validation.InputError as error:
        raise gr.Error(str(error)) from error
    image = Image.fromarray(first.image)
    image.thumbnail((UPLOAD_MAX_SIDE, UPLOAD_MAX_SIDE), Image.LANCZOS)
    frame_path = state.output_dir / f"upload_{uuid.uuid4().hex[:12]}.png"
    image.save(frame_path)
    width, height = first.source_size
    what = f"video ({first.duration_s:.1f} s), first frame" if first.kind == "video" else "image"
    note = f"**Upload** `{Path(path).name}`: {what}, {width}x{height} px. No ground truth. {FOV_NOTE}"
    return str(frame_path), {"kind": "upload", "path": str(frame_path), "name": Path(path).name}, note


def run_generation(
    state: SpaceState,
    selection: dict[str, str] | None,
    instruction: str,
    hands_choice: str,
    num_chunks: float,
    seed: float,
    decoding_steps: float,
    ensemble: float,
    show_truth: bool,
) -> tuple[Any, ...]:
    """Generate for the selected frame; returns the overlay GIF path, the 3D figure, the metrics table and a
    status line. Every refusal is a `gr.Error` that names the field and the fix."""
    if state.loaded is None:
        raise gr.Error(
            f"No JALA checkpoint is loaded ({state.model_path}). Run `{inference.CREATE_COMMAND}` and restart the "
            "app, or start it with --model PATH."
        )
    if not selection:
        raise gr.Error("input: pick an example or upload an image or video first.")
    try:
        text = validation.check_instruction(instruction)
        hands = validation.check_hands(hands_choice)
        chunks = validation.check_num_chunks(num_chunks)
        steps, ensemble_size = validation.check_decoding(decoding_steps, ensemble)
    except validation.InputError as error:
        raise gr.Error(str(error)) from error

    example = state.example(selection["name"]) if selection["kind"] == "example" else None
    frame_path = example.image_path if example is not None else Path(selection["path"])
    if not frame_path.is_file():
        raise gr.Error("input: the uploaded frame expired on the server; upload the file again.")
    frame = np.asarray(Image.open(frame_path).convert("RGB"))
    height, width = frame.shape[:2]
    intrinsics = (
        example.intrinsics
        if example is not None and example.intrinsics is not None
        else rendering.assumed_intrinsics(width, height)
    )

    prune_outputs(state.output_dir)
    prediction = inference.generate(state.loaded, frame, text, hands, chunks, int(seed or 0), steps, ensemble_size)
    truth_joints = truth_present = None
    metrics = pd.DataFrame(columns=list(inference.COMPARISON_COLUMNS))
    metrics_note = "No ground truth for this input, so no metrics."
    if example is not None and example.has_ground_truth:
        truth_joints = rendering.joints_from_motion(example.ground_truth())
        truth_present = example.hands_present or (True, True)
        mean_motion = example.mean_motion()
        rows = inference.comparison_metrics(
            prediction.joints,
            prediction.hands_present,
            truth_joints,
            truth_present,
            baselines={"mean motion": mean_motion} if mean_motion is not None else None,
        )
        if rows:
            metrics = pd.DataFrame(rows, columns=list(inference.COMPARISON_COLUMNS))
            baseline_note = (
                " 'mean motion' is the baseline that ignores the frame and the instruction: the per-frame mean of "
                "the training clips' joints."
                if mean_motion is not None
                else " No mean-motion baseline: the examples were built without training clips."
            )
            metrics_note = (
                f"Against the clip's exact labels over the first {rows[0][2]} frames (mm / degrees; "
                "MPJPE in the camera frame, PA after Procrustes alignment, MWTE wrist translation, MDE wrist "
                f"direction).{baseline_note}"
            )
        else:
            metrics_note = "The chosen hand(s) do not act in this clip, so there is nothing to compare."

    display, display_intrinsics = rendering.resize_for_display(frame, intrinsics)
    shown_truth = truth_joints if show_truth else None
    frames = rendering.overlay_frames(
        display, prediction.joints, prediction.hands_present, display_intrinsics, shown_truth, truth_present
    )
    gif = rendering.save_gif(frames, state.output_dir / f"motion_{uuid.uuid4().hex[:12]}.gif")
    figure = rendering.trajectory_figure(prediction.joints, prediction.hands_present, shown_truth, truth_present)
    steps = prediction.joints.shape[1]
    status = (
        f"Generated **{steps} frames** ({chunks} chunk(s), {steps / rendering.FPS:.1f} s at 15 fps) for "
        f"{' + '.join(hands)} in **{prediction.seconds:.1f} s** on {state.loaded.model.device}. {metrics_note}"
    )
    return str(gif), figure, metrics, status


# ------------------------------------------------------------------------------------------------------------
# Layout
# ------------------------------------------------------------------------------------------------------------

INTRO = """# JALA: hand motion from one frame and an instruction
Pick an example or upload a photo / short video, say what the hand should do, and the model predicts 3D hand
motion (MANO-D162, 21 joints per hand, 15 fps) from the **first frame and the instruction only**, as in the paper
([arXiv 2602.21736](https://arxiv.org/abs/2602.21736)). Generation runs on the CPU: a chunk (1 s of motion)
takes seconds."""

CSS = """
#notice {border-left: 4px solid #f59e0b; padding-left: 12px;}
#examples .caption-label {font-size: 11px;}
#model-info td:first-child {white-space: nowrap;}
"""


def model_table(state: SpaceState) -> str:
    if state.loaded is None:
        return state.model_notice or inference.no_model_message(state.model_path)
    lines = ["| field | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in state.loaded.summary]
    return "\n".join(lines)


def build_demo(state: SpaceState) -> gr.Blocks:
    """The Blocks UI for a loaded (or missing) model and example catalogue."""
    notices = [n for n in (state.model_notice, state.examples_notice) if n]
    first = state.examples[0] if state.examples else None
    steps, ensemble = state.loaded.default_decoding if state.loaded else (16, 4)
    # delete_cache: Gradio's own copies of served files go after a day, checked hourly.
    with gr.Blocks(title="JALA hand-motion demo", analytics_enabled=False, delete_cache=(3600, 86400)) as demo:
        gr.Markdown(INTRO)
        gr.Markdown("\n\n".join(notices), elem_id="notice", visible=bool(notices))
        selection = gr.State({"kind": "example", "name": first.name} if first else None)
        gallery = gr.Gallery(
            value=[(str(e.image_path), e.title) for e in state.examples],
            label="Examples: procedural lab and wild scenes (held out, with ground truth) and real frames",
            columns=12,
            rows=1,
            height=130,
            allow_preview=False,
            object_fit="cover",
            elem_id="examples",
            visible=bool(state.examples),
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                with gr.Row():
                    preview = gr.Image(
                        value=str(first.image_path) if first else None,
                        label="First frame",
                        type="filepath",
                        interactive=False,
                        height=280,
                        elem_id="preview",
                    )
                    with gr.Column():
                        upload = gr.UploadButton(
                            "Upload an image or a short video",
                            file_types=[*validation.IMAGE_SUFFIXES, *validation.VIDEO_SUFFIXES],
                            type="filepath",
                            icon=None,
                            size="md",
                            elem_id="upload",
                        )
                        instruction = gr.Textbox(
                            value=first.instruction if first else "",
                            label="Instruction",
                            placeholder="e.g. pick up the red cup",
                            max_lines=2,
                            elem_id="instruction",
                        )
                        hands = gr.Radio(
                            list(validation.HAND_CHOICES),
                            value=first.hands if first else "right",
                            label="Hands",
                            elem_id="hands",
                        )
                        chunks = gr.Slider(
                            1,
                            validation.MAX_CHUNKS,
                            value=first.suggested_chunks() if first else 2,
                            step=1,
                            label="Chunks (1 chunk = 15 frames = 1 s)",
                            elem_id="chunks",
                        )
                source_note = gr.Markdown(_source_note(first) if first else FOV_NOTE, elem_id="source-note")
                with gr.Accordion("Advanced", open=False):
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    passes = gr.Slider(
                        1, 64, value=steps, step=1, label="Masked-decoding passes per chunk ('sample' strategy)"
                    )
                    ensemble_size = gr.Slider(
                        1, 8, value=ensemble, step=1, label="Ensemble (decodings averaged, 'sample' strategy)"
                    )
                    show_truth = gr.Checkbox(value=True, label="Draw the ground truth (procedural examples)")
                generate = gr.Button(
                    "Generate" if state.loaded else "Generate (no model loaded)",
                    variant="primary",
                    interactive=state.loaded is not None,
                    elem_id="generate",
                )
                with gr.Accordion("Model information", open=True):
                    gr.Markdown(model_table(state), elem_id="model-info")
                with gr.Accordion("About the examples", open=False):
                    gr.Markdown(
                        "Procedural frames are held-out scenes of the project's procedural hand world. Real frames "
                        "come from public repositories under MIT or CC BY 4.0; see "
                        f"`{state.examples_dir.name}/ATTRIBUTION.md` for origins, licences and changes. The IPN "
                        "Hand frame: Benitez-Garcia et al., ICPR 2020, CC BY 4.0."
                    )
            with gr.Column(scale=5):
                animation = gr.Image(
                    label="Predicted skeleton on the first frame (animated)",
                    type="filepath",
                    interactive=False,
                    height=380,
                    elem_id="animation",
                )
                plot = gr.Plot(label="3D trajectory (camera frame)", elem_id="trajectory")
                metrics = gr.Dataframe(
                    headers=list(inference.COMPARISON_COLUMNS),
                    label="Metrics against ground truth",
                    interactive=False,
                    elem_id="metrics",
                )
                status = gr.Markdown(elem_id="status")

        def on_select(event: gr.SelectData) -> tuple[Any, ...]:
            return select_example(state, int(event.index))

        gallery.select(
            on_select,
            inputs=None,
            outputs=[preview, instruction, hands, chunks, selection, source_note],
            queue=False,
        )
        upload.upload(
            lambda path: receive_upload(state, path),
            inputs=upload,
            outputs=[preview, selection, source_note],
        )
        generate.click(
            lambda *args: run_generation(state, *args),
            inputs=[selection, instruction, hands, chunks, seed, passes, ensemble_size, show_truth],
            outputs=[animation, plot, metrics, status],
            concurrency_id="generate",
            api_name="generate",
        )
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=None,
        help=f"JALA folder or Hub id (default: ${inference.MODEL_ENV} or {inference.DEFAULT_MODEL})",
    )
    parser.add_argument("--examples", type=Path, default=inference.DEFAULT_EXAMPLES, help="built examples folder")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--concurrency", type=int, default=1, help="generations run at once (CPU: 1)")
    parser.add_argument("--max_queue", type=int, default=20, help="visitors that may wait in the queue")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    model_path = inference.resolve_model_path(args.model)
    state = load_state(model_path, args.examples)
    demo = build_demo(state)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.max_queue)
    theme = gr.themes.Soft(
        primary_hue="orange",
        font=["ui-sans-serif", "system-ui", "sans-serif"],  # local fonts: a Space must not need Google Fonts
        font_mono=["ui-monospace", "monospace"],
    )
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=f"{validation.MAX_UPLOAD_MB}mb",
        allowed_paths=[str(args.examples.resolve()), str(state.output_dir)],
        theme=theme,
        css=CSS,
        ssr_mode=False,
        show_error=True,
    )


if __name__ == "__main__":
    main()
