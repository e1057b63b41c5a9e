"""Is z informative? A linear probe from a pretrained JALA model's latent actions to the motion of their chunk.

The alignment loss pulls h towards z = LAP(frozen features of the chunk's two boundary frames); that teaches motion
only if z carries it. For every chunk and acting hand of the held-out labelled clips (the leading `max_chunks`
chunks), the probe predicts

* `displacement`: the wrist translation (MANO-D162 [96:99], metres) at the chunk's last frame minus its first — the
  motion itself;
* `end_position`: the wrist translation at the chunk's last frame — the state the chunk ends in;
* `opening_change`: the mean fingertip-to-wrist distance at the last frame minus the first, metres,

by ridge regression (`trainers/ssl_probe.fit_ridge`: standardised features, the penalty by exact leave-one-out
error) fitted on the labelled *train* clips of the split's own domain (lab; wild: the pseudo-labelled ones), so a
lab-to-wild shift does not masquerade as missing information, and scored on the held-out split as R² pooled within
hands (1 − SSE / SST, SST about each hand's test mean). Feature sets:

* `z (trained)`: the model's z of that hand (its K slots concatenated);
* `z (LAP at init)`: the same from a freshly initialised LAP on the same frozen features — what training added;
* `boundary features`: the frozen encoder's pooled features of the start frame and of end − start — what the
  encoder offers the LAP (a reference for a linear read-out);
* `mean`: the training folds' mean (R² ≤ 0): the floor.

Every set gets the hand as a one-hot. A z row at the floor for `displacement` while `boundary features` is well
above it says the LAP does not pass the motion on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dataset_scripts.collator import UniHandCollator
from modeling_jala.hand_jala import JOINTS_XYZ, KEYPOINT_NAMES, NUM_JOINTS, WRIST_TRANSL
from modeling_jala.layout_jala import CHUNK_FRAMES
from trainers.motion_baselines import labelled_rows
from trainers.pretrain_collator import ssl_pixel_values
from trainers.ssl_probe import fit_ridge, r2_within_groups

logger = logging.getLogger("jala.latent_probe")

FINGERTIPS = tuple(KEYPOINT_NAMES.index(f"{finger}_tip") for finger in ("thumb", "index", "middle", "ring", "pinky"))
WRIST_JOINT = KEYPOINT_NAMES.index("wrist")
#: The domain of each held-out split: its probe is fitted on the labelled train clips of that domain (wild: the
#: pseudo-labelled ones), so a lab-to-wild shift does not masquerade as missing information.
SPLIT_DOMAINS = {"test_lab": "lab", "test_wild": "wild"}
FEATURE_SETS = ("z (trained)", "z (LAP at init)", "boundary features", "mean")
#: Target name -> its columns in `chunk_motion_targets`.
TARGETS = {"displacement": slice(0, 3), "end_position": slice(3, 6), "opening_change": slice(6, 7)}


def chunk_motion_targets(motion: np.ndarray, first: int, last: int) -> np.ndarray:
    """(T, 162) motion of one hand -> (7,) targets of the chunk from frame `first` to `last` (see `TARGETS`)."""
    joints = motion[:, JOINTS_XYZ].reshape(len(motion), NUM_JOINTS, 3)
    opening = np.linalg.norm(joints[:, FINGERTIPS] - joints[:, WRIST_JOINT : WRIST_JOINT + 1], axis=-1).mean(-1)
    wrist = motion[:, WRIST_TRANSL]
    return np.concatenate([wrist[last] - wrist[first], wrist[last], [opening[last] - opening[first]]])


@torch.no_grad()
def chunk_samples(
    model: Any,
    processor: Any,
    repo: str | Path | Sequence[str | Path],
    split: str,
    init_lap: torch.nn.Module,
    max_clips: int = 40,
    domain: str | None = None,
    max_chunks: int = 4,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """Per (clip, chunk, acting hand): every feature set, the targets, the hand and the clip index."""
    rows = labelled_rows(repo, split, max_clips, domain)
    if not rows:
        return {name: np.zeros((0,)) for name in (*FEATURE_SETS[:3], "targets", "hands", "clips")}
    size = processor.image_processor.size
    collator = UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=max_chunks, boundary="images")
    jala = model.model
    out: dict[str, list[np.ndarray]] = {name: [] for name in (*FEATURE_SETS[:3], "targets", "hands", "clips")}
    for start in range(0, len(rows), batch_size):
        batch = collator(rows[start : start + batch_size])
        features = jala.ssl_features(ssl_pixel_values(processor, batch["boundary_frames"]))  # (B, N + 1, P, D)
        latents = {
            "z (trained)": jala.latent_actions(features),
            "z (LAP at init)": init_lap(features[:, :-1].flatten(0, 1), features[:, 1:].flatten(0, 1)),
        }
        latents = {name: z.reshape(*features.shape[:1], features.shape[1] - 1, 2, -1) for name, z in latents.items()}
        pooled = features.mean(-2)  # (B, N + 1, D)
        motion = batch["motion"].numpy()
        for b in range(len(batch["ids"])):
            length = int(batch["frame_lengths"][b])
            for chunk in range(int(batch["num_chunks"][b])):
                first, last = chunk * CHUNK_FRAMES, min((chunk + 1) * CHUNK_FRAMES, length - 1)
                boundary = torch.cat([pooled[b, chunk], pooled[b, chunk + 1] - pooled[b, chunk]]).numpy()
                for hand in np.flatnonzero(batch["hands_present"][b].numpy()):
                    for name, z in latents.items():
                        out[name].append(z[b, chunk, hand].numpy())
                    out["boundary features"].append(boundary)
                    out["targets"].append(chunk_motion_targets(motion[b, hand], first, last))
                    out["hands"].append(np.int64(hand))
                    out["clips"].append(np.int64(start + b))
    samples = {name: np.stack(values) for name, values in out.items()}
    one_hot = np.eye(2)[samples["hands"]]
    for name in FEATURE_SETS[:3]:
        samples[name] = np.concatenate([samples[name], one_hot], axis=1)
    return samples


#: Feature columns whose training std is below this fraction of the largest are dropped before the probe: a
#: collapsed z has near-constant dimensions, and standardising one by a tiny std would blow up its test values.
MIN_RELATIVE_STD = 1e-3
#: A split whose domain has fewer labelled train samples (chunk x hand) than this is not probed.
MIN_TRAIN_SAMPLES = 20


def probe_predictions(train: dict[str, np.ndarray], test: dict[str, np.ndarray], name: str) -> np.ndarray:
    """Test-sample predictions of a probe on feature set `name` fitted on the train samples (`mean`: each hand's
    train mean)."""
    predictions = np.zeros_like(test["targets"])
    if name == "mean":
        for hand in np.unique(test["hands"]):
            predictions[test["hands"] == hand] = train["targets"][train["hands"] == hand].mean(0)
        return predictions
    spread = train[name].std(0)
    kept = spread >= MIN_RELATIVE_STD * spread.max()
    seen = train[name][:, kept]
    probe = fit_ridge(seen, train["targets"])
    # Held-out features are clipped to the training range: one outlying frame must not extrapolate a linear probe
    # metres away and decide the R² alone.
    return probe.predict(np.clip(test[name][:, kept], seen.min(0), seen.max(0)))


def probe_latent_actions(
    model: Any,
    processor: Any,
    train_repos: str | Path | Sequence[str | Path],
    test_repo: str | Path,
    splits: Sequence[str] = ("test_lab", "test_wild"),
    max_train_clips: int = 300,
    max_test_clips: int = 40,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """{feature set: {split: {<target>_r2 for each of `TARGETS`, train/test samples}}} of a model with a LAP; a
    split whose domain has fewer than `MIN_TRAIN_SAMPLES` labelled train samples is left out."""
    jala = model.model
    if jala.lap is None:
        raise ValueError(f"variant {jala.config.variant!r} has no latent action perceiver to probe.")
    model.eval()
    torch.manual_seed(seed)
    init_lap = type(model)(model.config).model.lap.eval()  # initialised as a new model's LAP is
    report: dict[str, dict[str, dict[str, float]]] = {name: {} for name in FEATURE_SETS}
    for split in splits:
        domain = SPLIT_DOMAINS[split]
        train = chunk_samples(model, processor, train_repos, "train", init_lap, max_train_clips, domain=domain)
        if len(train["targets"]) < MIN_TRAIN_SAMPLES:
            logger.warning(
                "latent probe: %d labelled %s train samples, too few; %s skipped", len(train["targets"]), domain, split
            )
            continue
        test = chunk_samples(model, processor, test_repo, split, init_lap, max_test_clips)
        for name in FEATURE_SETS:
            predicted = probe_predictions(train, test, name)
            scores = {
                f"{target}_r2": r2_within_groups(test["targets"][:, columns], predicted[:, columns], test["hands"])
                for target, columns in TARGETS.items()
            }
            report[name][split] = {**scores, "train_samples": len(train["targets"]), "test_samples": len(predicted)}
    return report
