"""Evaluation metrics for predicted hand motion (units: metres in, millimetres / degrees out).

``JALA_HAND_MOTION_METRIC_PATH`` is the folder of the `evaluate` module that wraps these functions, so an
installed copy of the project can be used as ``evaluate.load(JALA_HAND_MOTION_METRIC_PATH)``;
``MOTION_DESCRIPTION_METRIC_PATH`` is that of the text metric of generated motion descriptions.
"""

from pathlib import Path

from .hand_motion import (
    MM_PER_M,
    NUM_HAND_JOINTS,
    WRIST_INDEX,
    hand_motion_metrics,
    mde,
    mde_per_sequence,
    mpjpe,
    mwte,
    pa_mpjpe,
    procrustes_align,
)

JALA_HAND_MOTION_METRIC_PATH = str(Path(__file__).resolve().parent / "jala_hand_motion")
MOTION_DESCRIPTION_METRIC_PATH = str(Path(__file__).resolve().parent / "motion_description")

__all__ = [
    "JALA_HAND_MOTION_METRIC_PATH",
    "MM_PER_M",
    "MOTION_DESCRIPTION_METRIC_PATH",
    "NUM_HAND_JOINTS",
    "WRIST_INDEX",
    "hand_motion_metrics",
    "mde",
    "mde_per_sequence",
    "mpjpe",
    "mwte",
    "pa_mpjpe",
    "procrustes_align",
]
