"""`evaluate` module of the JALA hand-motion metrics (MPJPE, PA-MPJPE, MWTE, MDE).

Load it from this folder (``evaluate.load("path/to/jala_hand_motion")``, or from an installed copy of the project
``evaluate.load(trainers.metrics.JALA_HAND_MOTION_METRIC_PATH)``) or from a Hub Space holding this folder's files.
It needs only numpy, datasets and evaluate: nothing of the JALA repository has to be importable.
"""

from __future__ import annotations

import datasets
import evaluate

# The math has one home, hand_motion_math.py beside this file (numpy only; the torch face of the project,
# trainers.metrics.hand_motion, uses the same file). `evaluate.load` copies only this script into its modules cache,
# plus each module it imports relatively: it greps top-level `from .name import` lines and copies `name.py` from
# this folder (or downloads it from the Space) next to the script. Keep this import on one line, relative.
from .hand_motion_math import hand_motion_metrics, pad_sequences

_CITATION = """\
@inproceedings{luo2026jala,
  title     = {Joint-Aligned Latent Action: Towards Scalable {VLA} Pretraining in the Wild},
  author    = {Luo, Hao and Wang, Ye and Zhang, Wanpeng and Yuan, Haoqi and Feng, Yicheng and Xu, Haiweng
               and Zheng, Sipeng and Lu, Zongqing},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026},
  eprint    = {2602.21736},
  archivePrefix = {arXiv},
}
"""

_DESCRIPTION = """\
Hand-motion prediction metrics reported by JALA (Table 1) for predicted 3D hand joint sequences
(21 MediaPipe-order keypoints per frame, wrist first, positions in metres):

- MPJPE (mm): mean Euclidean distance over all frames and joints.
- PA-MPJPE (mm): MPJPE after a per-frame similarity Procrustes alignment (scale, proper rotation,
  translation) of the prediction onto the reference; scores articulation only.
- MWTE (mm): mean wrist translation error, the mean over frames of the wrist position error.
- MDE (degrees): motion direction error, the angle between the predicted and the true net wrist
  displacement (last frame minus first frame) of each sequence, averaged over sequences. Sequences whose
  true displacement is shorter than `eps_m` are excluded; a predicted displacement shorter than `eps_m`
  scores 90 degrees. NaN if every sequence is excluded.

Position errors are pooled over all frames of all sequences; MDE is a mean over sequences.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of predicted joint sequences, each of shape (T_i, 21, 3), in metres
        (nested lists, numpy arrays or torch tensors). Sequences may differ in length.
    references: list of reference joint sequences, same shapes as `predictions`, item by item.
    eps_m: float, default 1e-3. Minimum true net wrist displacement (metres) for a sequence to count in MDE.
Returns:
    mpjpe_mm: float, mean per-joint position error in millimetres.
    pa_mpjpe_mm: float, Procrustes-aligned MPJPE in millimetres.
    mwte_mm: float, mean wrist translation error in millimetres.
    mde_deg: float, motion direction error in degrees (NaN if every sequence is excluded).
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("trainers/metrics/jala_hand_motion")
    >>> ref = [[[0.01 * j, 0.002 * t, 0.0] for j in range(21)] for t in range(15)]
    >>> pred = [[[x + 0.01, y, z] for x, y, z in frame] for frame in ref]
    >>> results = metric.compute(predictions=[pred], references=[ref])
    >>> print({k: round(v, 3) for k, v in results.items()})
    {'mpjpe_mm': 10.0, 'pa_mpjpe_mm': 0.0, 'mwte_mm': 10.0, 'mde_deg': 0.0}
"""

_JOINTS = datasets.List(datasets.List(datasets.List(datasets.Value("float64"))))  # (T, 21, 3)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class JalaHandMotion(evaluate.Metric):
    """MPJPE / PA-MPJPE / MWTE / MDE of predicted hand joint sequences (mm and degrees)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": _JOINTS, "references": _JOINTS}),
            homepage="https://research.beingbeyond.com/jala",
            reference_urls=["https://arxiv.org/abs/2602.21736"],
        )

    def _compute(self, predictions, references, eps_m: float = 1e-3) -> dict[str, float]:
        """Pad the variable-length sequences into one batch with a frame mask, then score it."""
        pred_joints, target_joints, mask = pad_sequences(predictions, references)
        return hand_motion_metrics(pred_joints, target_joints, mask, eps_m=eps_m)
