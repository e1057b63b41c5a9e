"""Motion description (docs/design.md §1.13): L_desc on description tokens only, the pretraining mixture's share,
greedy `generate_description` with the KV cache, and the `motion_description` text metric."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_scripts.builder import build_unihand
from dataset_scripts.collator import DESCRIBE_KEY, UniHandCollator
from modeling_jala.layout_jala import IGNORE_TOKEN_ID
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.processing_jala import DESCRIPTION_PROMPT
from tests.fixtures.standalone_metric import run_on_metric_copy
from tests.fixtures.tiny_jala import IMAGE_SIZE, tiny_jala_config, tiny_processor
from tests.fixtures.unihand_factory import FixtureSource
from tests.test_jala_model import make_batch
from tests.test_pretrain import pretrain_inputs, run_pretrain  # noqa: F401  (module fixture)
from trainers.evaluate_description import FamilyModeBaseline
from trainers.metrics.motion_description.description_text_math import (
    description_metrics,
    exact_match,
    rouge_l_f1,
    token_f1,
)
from trainers.pretrain_collator import DescriptionMixture, JalaPretrainCollator

METRIC_FOLDER = Path(__file__).resolve().parent.parent / "trainers" / "metrics" / "motion_description"
TEXTS = ["the right hand picks up the red cup", "wave"]


@pytest.fixture
def model() -> JalaForMotionPretraining:
    torch.manual_seed(0)
    return JalaForMotionPretraining(tiny_jala_config()).eval()


def description_batch(describe: tuple[bool, ...] = (True, False)) -> dict:
    batch = make_batch(2, 3, labelled=(True, True))
    return {**batch, **tiny_processor().description_targets(TEXTS), "describe": torch.tensor(describe)}


# --------------------------------------------------------------------------------------------------------------
# L_desc
# --------------------------------------------------------------------------------------------------------------
def test_description_targets_score_text_and_end_but_not_start_or_padding() -> None:
    processor = tiny_processor()
    targets = processor.description_targets(TEXTS)
    start, end = processor.description_token_ids()
    words = processor.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    assert targets["description_ids"][0].tolist() == [start, *words, end]
    assert targets["description_labels"][0].tolist() == [IGNORE_TOKEN_ID, *words, end]
    # The short row: start, "wave", end, then padding that is neither visible nor scored.
    assert targets["description_mask"][1].tolist() == [True] * 3 + [False] * (len(words) - 1)
    assert (targets["description_labels"][1, 3:] == IGNORE_TOKEN_ID).all()


def test_description_loss_is_the_cross_entropy_of_the_description_tokens_only(model) -> None:
    batch = description_batch()
    out = model(**batch, generator=torch.Generator().manual_seed(0))
    labels = batch["description_labels"]
    # Row 1 is no description sample: none of its text counts. Row 0: every word and the end token.
    assert int(out.num_description_tokens) == int((labels[0] != IGNORE_TOKEN_ID).sum()) == len(TEXTS[0].split()) + 1
    scored = labels[0, 1:] != IGNORE_TOKEN_ID
    manual = torch.nn.functional.cross_entropy(out.description_logits[0, :-1][scored].float(), labels[0, 1:][scored])
    assert torch.allclose(out.description_loss, manual)
    # The context (prompt, frame, motion) has no positions in L_desc: changing it changes no counted position, and
    # a label at the start token or on the row that is not a description sample is ignored.
    changed = {**batch, "input_ids": batch["input_ids"].flip(1), "motion_token_ids": batch["motion_token_ids"] // 2}
    relabelled = batch["description_labels"].clone()
    relabelled[:, 0] = 5
    relabelled[1] = 7
    for variant in (changed, {**batch, "description_labels": relabelled}):
        other = model(**variant, generator=torch.Generator().manual_seed(0))
        assert int(other.num_description_tokens) == int(out.num_description_tokens)
    other = model(**{**batch, "description_labels": relabelled}, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(other.description_loss, out.description_loss)


def test_description_loss_known_answers(model, monkeypatch) -> None:
    """Uniform logits give ln V per token; logits peaked on every next token give ~0."""
    labels = tiny_processor().description_targets(TEXTS)["description_labels"]
    vocabulary = model.config.vlm_config.get_text_config().vocab_size
    states = torch.zeros(2, labels.shape[1], 4)
    monkeypatch.setattr(model, "text_logits", lambda s: torch.zeros(*s.shape[:2], vocabulary))
    loss, _, count = model.description_loss(states, labels)
    assert math.isclose(float(loss), math.log(vocabulary), rel_tol=1e-6)
    assert int(count) == int((labels != IGNORE_TOKEN_ID).sum())
    peaked = torch.full((2, labels.shape[1], vocabulary), -50.0)
    targets = labels[:, 1:].clamp_min(0)
    peaked[:, :-1].scatter_(-1, targets[..., None], 50.0)
    monkeypatch.setattr(model, "text_logits", lambda s: peaked)
    loss, _, _ = model.description_loss(states, labels)
    assert float(loss) < 1e-6


def test_description_rows_see_every_slot_and_train_neither_mcp_nor_align(model) -> None:
    batch = description_batch(describe=(True, True))
    out = model(**batch, generator=torch.Generator().manual_seed(0))
    assert not out.placeholder_slots.any()
    assert int(out.num_masked_tokens) == 0
    assert float(out.align_loss) == 0.0
    torch.testing.assert_close(out.loss.detach(), model.config.description_weight * out.description_loss)


def test_without_description_samples_the_two_losses_are_unchanged(model) -> None:
    plain = make_batch(2, 3, labelled=(True, False))
    reference = model(**plain, generator=torch.Generator().manual_seed(0))
    with_text = model(
        **plain,
        **tiny_processor().description_targets(TEXTS),
        describe=torch.tensor([False, False]),
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(with_text.mcp_loss, reference.mcp_loss)
    torch.testing.assert_close(with_text.align_loss, reference.align_loss)
    torch.testing.assert_close(with_text.loss, reference.loss)
    assert int(with_text.num_description_tokens) == 0


def test_the_lm_head_is_the_tied_input_embedding_or_an_own_head() -> None:
    tied = JalaForMotionPretraining(tiny_jala_config())
    assert tied.lm_head is None and tied.config.vlm_config.tie_word_embeddings
    states = torch.randn(3, tied.config.hidden_size)
    torch.testing.assert_close(tied.text_logits(states), states @ tied.model.get_input_embeddings().weight.T)
    config = tiny_jala_config()
    config.vlm_config.tie_word_embeddings = False
    untied = JalaForMotionPretraining(config)
    assert untied.lm_head is not None and untied.lm_head.weight.shape[0] == config.vlm_config.text_config.vocab_size


# --------------------------------------------------------------------------------------------------------------
# generate_description
# --------------------------------------------------------------------------------------------------------------
def manual_greedy(model, processor, frames, token_ids, hands_present, steps: int) -> torch.Tensor:
    """The full forward (no cache) re-run for every new token: what the cached loop must reproduce."""
    inputs = processor(images=frames, text=[DESCRIPTION_PROMPT] * len(frames))
    start, _ = processor.description_token_ids()
    text = torch.full((len(frames), 1), start)
    for _ in range(steps):
        out = model.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"],
            motion_token_ids=token_ids,
            placeholder_slots=torch.zeros(token_ids.shape, dtype=torch.bool),
            hands_present=hands_present,
            ssl_pixel_values=inputs["ssl_pixel_values"][:, None],
            text_ids=text,
        )
        text = torch.cat([text, model.text_logits(out.text_hidden_states[:, -1:]).argmax(-1)], dim=1)
    return text[:, 1:]


def test_generate_description_equals_a_manual_greedy_loop_and_returns_strings(model) -> None:
    torch.manual_seed(1)
    with torch.no_grad():  # larger weights, so greedy tokens differ between steps and rows
        for parameter in model.model.language_model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(std=0.3)
        model.model.get_input_embeddings().weight[0] = 0.0  # the end token (pad): logit 0, so decoding runs on
    processor = tiny_processor()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8) for _ in range(2)]
    token_ids = torch.randint(0, 64, (2, 2, 2, 128))
    token_ids[1, 1] = IGNORE_TOKEN_ID  # row 1 has one chunk
    hands_present = torch.tensor([[True, True], [False, True]])
    token_ids[1, :, 0] = IGNORE_TOKEN_ID
    _, end = processor.description_token_ids()
    cached = model.generate_description_ids(
        frames, processor=processor, motion_token_ids=token_ids, hands_present=hands_present, max_new_tokens=6
    )
    assert (
        cached.shape == (2, 6) and len(set(cached.flatten().tolist())) > 3 and cached[0].tolist() != cached[1].tolist()
    )
    manual = manual_greedy(model, processor, frames, token_ids, hands_present, cached.shape[1])
    for row in range(2):
        produced = cached[row].tolist()
        length = produced.index(end) + 1 if end in produced else len(produced)
        assert produced[:length] == manual[row, :length].tolist()
    texts = model.generate_description(
        frames, processor=processor, motion_token_ids=token_ids, hands_present=hands_present, max_new_tokens=6
    )
    assert isinstance(texts, list) and len(texts) == 2 and all(isinstance(text, str) for text in texts)


def test_a_finished_row_is_padded_while_the_others_decode_on(model, monkeypatch) -> None:
    processor = tiny_processor()
    _, end = processor.description_token_ids()
    vocabulary = model.config.vlm_config.get_text_config().vocab_size
    calls = []

    def scripted_logits(states: torch.Tensor) -> torch.Tensor:
        """Row 0 says word 5 then ends; row 1 says word 6 forever."""
        logits = torch.zeros(*states.shape[:-1], vocabulary)
        logits[0, :, end if calls else 5] = 1.0
        logits[1, :, 6] = 1.0
        calls.append(1)
        return logits

    monkeypatch.setattr(model, "text_logits", scripted_logits)
    frames = [np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)] * 2
    token_ids = torch.randint(0, 64, (2, 1, 2, 128))
    ids = model.generate_description_ids(frames, processor=processor, motion_token_ids=token_ids, max_new_tokens=4)
    pad = processor.tokenizer.pad_token_id
    assert ids.tolist() == [[5, end, pad, pad], [6, 6, 6, 6]]
    calls.clear()
    texts = model.generate_description(frames, processor=processor, motion_token_ids=token_ids, max_new_tokens=4)
    words = processor.tokenizer.convert_ids_to_tokens([5, 6])
    assert texts == [words[0], " ".join([words[1]] * 4)]


def test_generate_description_from_raw_motion(model) -> None:
    frames = [np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)]
    motion = 0.05 * torch.randn(1, 2, 20, 162)
    motion[:, 0] = 0.0  # left hand absent
    texts = model.generate_description(frames, motion, tiny_processor(), max_new_tokens=3)
    assert len(texts) == 1 and isinstance(texts[0], str)


# --------------------------------------------------------------------------------------------------------------
# The mixture and the collator
# --------------------------------------------------------------------------------------------------------------
class ListStream(torch.utils.data.IterableDataset):
    """A stand-in for UniHandStream: endless rows, split for one rank."""

    rank, world_size = 0, 1

    def __init__(self, task_type: str) -> None:
        super().__init__()
        self.task_type = task_type

    def __iter__(self):
        index = 0
        while True:
            yield {"id": f"{self.task_type}-{index}", "task_type": self.task_type, "labelled": True}
            index += 1


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_the_mixture_draws_description_samples_at_the_share(share: float) -> None:
    mixture = DescriptionMixture(ListStream("motion_generation"), ListStream("motion_description"), share, seed=0)
    rows = [row for row, _ in zip(mixture, range(4000), strict=False)]
    flagged = np.array([bool(row.get(DESCRIBE_KEY)) for row in rows])
    assert abs(flagged.mean() - share) < 0.025
    assert all(row["task_type"] == "motion_description" for row in np.array(rows)[flagged])
    # The other samples are the main stream's rows, in order and untouched.
    others = [row for row, flag in zip(rows, flagged, strict=True) if not flag]
    assert [row["id"] for row in others] == [f"motion_generation-{i}" for i in range(len(others))]
    assert all(DESCRIBE_KEY not in row for row in others)
    again = [row["id"] for row, _ in zip(mixture, range(200), strict=False)]
    assert again == [row["id"] for row in rows[:200]]  # seeded: a rerun draws the same mixture


def test_the_collator_builds_description_inputs_only_for_flagged_rows(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    build_unihand(repo, [FixtureSource(num_clips=6, seed=3)], progress=False, preview=False)
    from dataset_scripts.streaming import UniHandStream

    rows = [row for row in UniHandStream(repo, split="train", infinite=False, shuffle=False) if row["labelled"]][:2]
    collator = JalaPretrainCollator(tiny_processor(), UniHandCollator(image_size=IMAGE_SIZE, max_chunks=2))
    plain = collator(rows)
    assert not any(key.startswith("description") for key in plain) and "describe" not in plain
    mixed = collator([{**rows[0], DESCRIBE_KEY: True}, rows[1]])
    assert mixed["describe"].tolist() == [True, False]
    expected = tiny_processor().description_targets([rows[0]["instruction"], ""])
    torch.testing.assert_close(mixed["description_ids"], expected["description_ids"])
    prompt = tiny_processor()(images=[np.zeros((8, 8, 3), np.uint8)], text=[DESCRIPTION_PROMPT])["input_ids"][0]
    assert mixed["input_ids"][0, -len(prompt) :].tolist() == prompt.tolist()
    real = [batch["input_ids"][1][batch["attention_mask"][1].bool()] for batch in (mixed, plain)]
    torch.testing.assert_close(real[0], real[1])  # an ordinary row keeps its instruction


def test_pretraining_with_a_description_share_logs_l_desc(pretrain_inputs, tmp_path: Path) -> None:  # noqa: F811
    repo, tokenizer = pretrain_inputs
    run_pretrain(repo, tokenizer, tmp_path / "out", "--max_steps=3", "--description_share=0.5", "--save_strategy=no")
    history = json.loads((tmp_path / "out" / "training_log.json").read_text())
    logged = [record for record in history if "description_loss" in record]
    assert logged and all(math.isfinite(record["description_loss"]) for record in logged)
    assert all("mcp_loss" in record for record in logged)


# --------------------------------------------------------------------------------------------------------------
# The metric
# --------------------------------------------------------------------------------------------------------------
def test_metric_known_answers() -> None:
    text = "The right hand lifts the red cup about 12 cm."
    assert description_metrics([text], ["the right hand lifts the red cup about 12 cm"]) == {
        "rouge_l_f1": 1.0,
        "token_f1": 1.0,
        "exact_match": 1.0,
    }
    assert description_metrics(["wave hello"], ["the cup is red"]) == {
        "rouge_l_f1": 0.0,
        "token_f1": 0.0,
        "exact_match": 0.0,
    }
    # LCS("the cat on mat", "the cat sat on the mat") = 4: P = 1, R = 4/6, F1 = 0.8.
    assert math.isclose(rouge_l_f1("the cat on mat", "The cat sat on the mat."), 0.8)
    # Order matters for ROUGE-L (LCS 2: P = 1/2, R = 1/3, F1 = 0.4), not for token F1 (4 common words: 0.8).
    assert math.isclose(rouge_l_f1("mat the on cat", "the cat sat on the mat"), 0.4)
    assert math.isclose(token_f1("mat the on cat", "the cat sat on the mat"), 0.8)
    assert exact_match("", "") == rouge_l_f1("", "") == 1.0 and rouge_l_f1("", "a") == 0.0


#: Run in a fresh interpreter: the repository's packages unimportable, sockets refused, the copied metric folder
#: loaded with `evaluate.load`, its results printed as JSON.
STANDALONE_DESCRIPTION_METRIC = """
import json, socket, sys
for package in ("trainers", "modeling_jala", "dataset_scripts"):
    sys.modules[package] = None  # `import trainers` now raises ImportError


def no_network(self, address, *args, **kwargs):
    raise OSError(f"network access attempted to {address}")


socket.socket.connect = no_network
import evaluate

metric = evaluate.load(sys.argv[1], keep_in_memory=True)
scores = metric.compute(predictions=["the cat on mat", "wave"], references=["The cat sat on the mat.", "wave"])
print(json.dumps(scores))
"""


def test_metric_module_loads_standalone_with_evaluate(tmp_path: Path) -> None:
    """`evaluate.load` of a copy of the folder, in a fresh interpreter where the repository is not importable and
    the network is refused (a fresh process, so no other test's `evaluate_modules` cache is in the way)."""
    computed = run_on_metric_copy(STANDALONE_DESCRIPTION_METRIC, METRIC_FOLDER, tmp_path)
    assert computed == pytest.approx({"rouge_l_f1": 0.9, "token_f1": 0.9, "exact_match": 0.5})


def test_family_mode_baseline_takes_the_mode_then_the_medoid() -> None:
    def row(family: str, text: str) -> dict:
        return {"scene": json.dumps({"motion": {"family": family}}), "instruction": text}

    rows = [row("wave", "a b"), row("wave", "a b"), row("wave", "c d"), row("push", "x y z"), row("push", "x y w")]
    rows.append(row("push", "q r s"))
    baseline = FamilyModeBaseline(rows)
    assert baseline(row("wave", "")) == "a b"
    assert baseline(row("push", "")) in ("x y z", "x y w")  # the two that share words beat the outlier
    assert baseline({"scene": "{}", "instruction": ""}) == "a b"  # unknown family: the overall mode
