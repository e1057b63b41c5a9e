"""`evaluate` module scoring generated motion descriptions: ROUGE-L F1, token F1 and exact match.

Load it from this folder (``evaluate.load("path/to/motion_description")``, or from an installed copy of the project
``evaluate.load(trainers.metrics.MOTION_DESCRIPTION_METRIC_PATH)``). It needs only numpy, datasets and evaluate:
the Hub's rouge / bleu modules (which download code and need `rouge_score` / `nltk`) are not used.
"""

from __future__ import annotations

import datasets
import evaluate

# The math has one home, description_text_math.py beside this file; `evaluate.load` copies modules imported with a
# top-level one-line relative import next to this script. Keep this import on one line, relative.
from .description_text_math import description_metrics

_CITATION = """\
@inproceedings{lin2004rouge,
  title     = {{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author    = {Lin, Chin-Yew},
  booktitle = {Text Summarization Branches Out},
  year      = {2004},
}
"""

_DESCRIPTION = """\
Text overlap of generated hand-motion descriptions with reference descriptions (the motion_description task of
UniHand-Mix). Texts are lower-cased, punctuation becomes spaces, and they are split on whitespace into words.

- rouge_l_f1: F-measure (β = 1) of the longest common subsequence of words: precision = LCS / predicted words,
  recall = LCS / reference words.
- token_f1: F1 of the words in common, counted with multiplicity, order ignored.
- exact_match: 1 when the word sequences are equal.

Each is computed per pair and averaged. Two empty texts score 1, one empty text scores 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of generated descriptions (strings).
    references: list of reference descriptions, one per prediction.
Returns:
    rouge_l_f1: float in [0, 1].
    token_f1: float in [0, 1].
    exact_match: float in [0, 1].
Examples:
    >>> import evaluate
    >>> metric = evaluate.load("trainers/metrics/motion_description")
    >>> metric.compute(predictions=["the cat on mat"], references=["The cat sat on the mat."])
    {'rouge_l_f1': 0.8, 'token_f1': 0.8, 'exact_match': 0.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MotionDescription(evaluate.Metric):
    """ROUGE-L F1, token F1 and exact match of generated descriptions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://aclanthology.org/W04-1013/"],
        )

    def _compute(self, predictions, references) -> dict[str, float]:
        return description_metrics(predictions, references)
