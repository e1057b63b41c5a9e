"""JALA pretraining: masked chunk prediction + latent-action alignment on UniHand-Mix.

    python trainers/pretrain.py --dataset outputs/unihand_mix --motion_tokenizer outputs/motion_tokenizer \
        --output_dir outputs/jala --structure tiny --max_steps 200
    accelerate launch --config_file trainers/configs/ddp.yaml trainers/pretrain.py ...   # multi-GPU DDP
    accelerate launch --config_file trainers/configs/fsdp.yaml trainers/pretrain.py ...  # FSDP
    accelerate launch --config_file trainers/configs/deepspeed_zero2.yaml trainers/pretrain.py ...

Starting points: `--model_name_or_path` continues from a JALA folder; `--backbone_name_or_path` +
`--ssl_encoder_name_or_path` start from pretrained checkpoints (InternVL3-2B-hf, a DINOv3 ViT) as the paper does
(with `--structure tiny`, the tiny settings go around a small backbone such as trainers/train_grounding_vlm.py's);
otherwise `--structure tiny|paper` builds a randomly initialised model (with a word-level tokenizer made from the
dataset's instructions when no processor is given), around the frozen SSL encoder of `--ssl_encoder_name_or_path`
when given (e.g. one from trainers/train_ssl_encoder.py: its config, weights and preprocessing are used). Defaults
follow the paper: AdamW lr 3e-5, weight decay 0.05, betas (0.9, 0.95), 5% warmup + cosine, gradient clipping 1.0.
The output folder is a Hub repo that `huggingface_hub.upload_folder` can publish as it is: config with auto_map,
safetensors, the modeling code, the processor, the motion tokenizer subfolder, a card with Hub metadata, JSON logs and
plots; no pickle and no local path. Resumable Trainer checkpoints (optimizer, scheduler and RNG state) go beside it,
to `--checkpoint_dir` (default `<output_dir>-checkpoints`); resume with `--resume_from_checkpoint last` or a
`checkpoint-N` folder there.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, HfArgumentParser, PreTrainedModel, TrainingArguments, set_seed

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dataset_scripts.collator import UniHandCollator
from dataset_scripts.streaming import UniHandStream
from modeling_jala.configuration_jala import hub_repo_id
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from modeling_jala.processing_jala import JalaProcessor
from modeling_jala.ssl_features_jala import ssl_image_settings
from modeling_jala.strict_loading_jala import strict_from_pretrained
from trainers.chunk_buckets import ChunkCountBuckets
from trainers.hub_folder import hub_repo_ids
from trainers.jala_trainer import JalaPretrainTrainer
from trainers.model_card import write_jala_card
from trainers.plotting import plot_layer_accuracy, plot_training_curves
from trainers.presets import (
    build_processor,
    build_word_tokenizer,
    image_seq_length,
    jala_structure,
    structure_training_defaults,
)
from trainers.pretrain_collator import DescriptionMixture, JalaPretrainCollator, LabelledRows
from trainers.token_priors import training_token_ids
from trainers.training_common import (
    HubFolderArguments,
    PaperTrainingArguments,
    finish_hub_folder,
    recorded_arguments,
    route_checkpoints,
    save_hub_folder,
)

logger = logging.getLogger("jala.pretrain")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "A JALA folder to continue from."})
    backbone_name_or_path: str | None = field(
        default=None, metadata={"help": "Pretrained VLM (e.g. InternVL3-2B-hf)."}
    )
    ssl_encoder_name_or_path: str | None = field(default=None, metadata={"help": "Pretrained DINOv3 / V-JEPA2."})
    processor_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved JalaProcessor; default: the model folder's, or built."}
    )
    motion_tokenizer: str | None = field(default=None, metadata={"help": "Trained motion tokenizer folder."})
    structure: str | None = field(
        default=None,
        metadata={
            "help": "JALA settings: tiny or paper. From scratch it also sizes the VLM (default tiny); with "
            "--backbone_name_or_path the VLM is the backbone's and the default is paper (a released VLM), while "
            "tiny puts the tiny settings and CPU preset around a small backbone (trainers/train_grounding_vlm.py)."
        },
    )
    variant: str = field(default="jala", metadata={"help": "jala, wo_align, wo_latent, wo_dec, jala_act, lapa."})
    align_weight: float | None = field(default=None, metadata={"help": "λ (default 0.5; 0 for wo_align)."})
    align_layer: int | None = field(default=None)
    ema_decay: float | None = field(default=None)
    all_chunks_hidden_share: float | None = field(
        default=None,
        metadata={
            "help": "Share of labelled clips with every chunk hidden and scored (trains the 'joint' decoding); "
            "default: the structure's (tiny: its CPU preset; paper: 0, the paper's masking)."
        },
    )
    decoding_strategy: str | None = field(
        default=None, metadata={"help": "generate_motion's default: expected, sample or joint (default: structure's)."}
    )
    init_token_priors: bool = field(
        default=True,
        metadata={
            "help": "A new model's output heads start at the log frequency of each codebook's codes in the training "
            "motion (not uniform); ignored with --model_name_or_path."
        },
    )
    compile_decoder_layers: str | None = field(
        default=None,
        metadata={
            "help": "torch.compile backend (e.g. inductor) for regional compilation: each language-model decoder "
            "layer compiled in place, one graph shared by all; the rest of the step stays eager. Default: eager."
        },
    )


@dataclass
class DataArguments:
    dataset: list[str] = field(default_factory=list, metadata={"help": "UniHand-Mix repo folder(s)."})
    lab_weight: float | None = field(default=None, metadata={"help": "Share of lab clips (default: by row count)."})
    max_chunks: int = field(default=4, metadata={"help": "Chunks (seconds) per training clip."})
    description_share: float = field(
        default=0.0,
        metadata={
            "help": "Share of training samples drawn from the labelled motion_description clips and trained as "
            "descriptions (L_desc: the VLM writes the clip's description after reading the frame and the whole "
            "motion; docs/design.md §1.13). (D) 0: off, the paper's two-loss recipe; e.g. 0.2, the share of "
            "description clips in the synthetic builder's task mix."
        },
    )
    shuffle_buffer_size: int = field(default=1000)
    group_by_chunks: bool = field(
        default=False,
        metadata={
            "help": "Batch clips that keep the same number of chunks together (length bucketing), so a batch is "
            "not padded to its longest clip; rows are delayed, never dropped (trainers/chunk_buckets.py)."
        },
    )
    grounding_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of grounding co-training (trainers/grounding_cotraining.py): every step also trains "
            "the VLM to locate objects in freshly rendered procedural scenes (what it asks: --grounding_task). 0: off "
            "(the paper's recipe)."
        },
    )
    grounding_task: str = field(
        default="instruction",
        metadata={
            "help": "instruction: the prompt is a clip's instruction and each acting hand's first target is found; "
            "phrase: 'the pink cup' is found (the grounding stand-in's task)."
        },
    )
    grounding_scenes: int = field(default=3000, metadata={"help": "Rendered scenes for grounding co-training."})
    grounding_batch_size: int = field(default=32, metadata={"help": "Grounding queries per training step."})
    grounding_readout_layer: int | None = field(
        default=None, metadata={"help": "LM layer the grounding heads read (default: half the depth)."}
    )
    waypoint_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the wrist-waypoint regression on labelled clips (trainers/waypoint_auxiliary.py): h "
            "at each chunk regresses the wrist position at the chunk's end. 0: off (the paper's recipe)."
        },
    )
    eval_split: str | None = field(default="test_lab")
    max_eval_samples: int = field(default=64)


@dataclass
class JalaTrainingArguments(PaperTrainingArguments):
    """The paper's pretraining optimisation (AdamW lr 3e-5, see `PaperTrainingArguments`)."""

    learning_rate: float = field(default=3e-5)


def _variant_overrides(args: ModelArguments) -> dict:
    overrides = {"variant": args.variant}
    if args.variant == "wo_align" and args.align_weight is None:
        overrides["align_weight"] = 0.0
    for name in ("align_weight", "align_layer", "ema_decay", "all_chunks_hidden_share", "decoding_strategy"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    return overrides


def instructions_of(repos: list[str]) -> list[str]:
    """Every instruction of the training split, for a from-scratch word-level tokenizer (held-out words -> <unk>)."""
    # Every rank must read the whole split (not its own part), or the ranks build different vocabularies.
    stream = UniHandStream(
        repos, split="train", infinite=False, shuffle=False, columns=["instruction"], rank=0, world_size=1
    )
    return [row["instruction"] for row in stream]


def load_ssl_encoder(path: str) -> tuple[PreTrainedModel, dict]:
    """A pretrained frozen SSL encoder folder (e.g. from trainers/train_ssl_encoder.py or a DINOv3 checkpoint):
    the model, loaded strictly (every tensor present, no extra one), and its input size / mean / std."""
    return strict_from_pretrained(AutoModel, path), ssl_image_settings(path)


def load_small_backbone(path: str) -> tuple[PreTrainedModel, Any, Any]:
    """A VLM folder with its own tokenizer and image processor (e.g. trainers/train_grounding_vlm.py's), loaded
    strictly, for a `--structure tiny` model around it."""
    from transformers import AutoImageProcessor, AutoTokenizer

    return (
        strict_from_pretrained(AutoModel, path),
        AutoTokenizer.from_pretrained(path),
        AutoImageProcessor.from_pretrained(path),
    )


def check_backbone_tokens(vlm_config: Any, tokenizer: Any, path: str) -> None:
    """The prompt's tokens must mean what the backbone learned: its image token and a vocabulary it embeds."""
    image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    if image_token_id != vlm_config.image_token_id or len(tokenizer) > vlm_config.text_config.vocab_size:
        raise ValueError(
            f"{path}: the tokenizer's <IMG_CONTEXT> id {image_token_id} and {len(tokenizer)} tokens do not fit the "
            f"VLM (image_token_id {vlm_config.image_token_id}, vocab_size {vlm_config.text_config.vocab_size}); "
            "use the tokenizer saved with the backbone (leave --processor_name_or_path out)."
        )


def check_ssl_processor(processor: JalaProcessor, settings: dict, encoder_path: str) -> None:
    """A given processor must preprocess frames as the SSL encoder was trained (size, mean, std)."""
    ssl = processor.ssl_image_processor
    size = ssl.size.get("height", ssl.size.get("shortest_edge"))
    given = {"image_size": size, "image_mean": list(ssl.image_mean), "image_std": list(ssl.image_std)}
    if any(not np.allclose(given[key], settings[key]) for key in settings):
        raise ValueError(
            f"--processor_name_or_path preprocesses SSL frames as {given}, but the encoder in {encoder_path} expects "
            f"{settings}; leave --processor_name_or_path out to build a matching processor, or save one that matches."
        )


def resolved_structure(model_args: Any) -> str:
    """`--structure`, or its default: paper around a released backbone, tiny from scratch."""
    if model_args.structure is not None:
        return model_args.structure
    return "paper" if model_args.backbone_name_or_path else "tiny"


def build_model_and_processor(model_args: ModelArguments, data_args: DataArguments):
    if model_args.model_name_or_path:
        if model_args.ssl_encoder_name_or_path:
            raise ValueError(
                "--ssl_encoder_name_or_path cannot replace the encoder of --model_name_or_path (the JALA folder holds "
                "its own frozen encoder); drop one of the two."
            )
        model = JalaForMotionPretraining.from_pretrained(model_args.model_name_or_path)
        processor = JalaProcessor.from_pretrained(model_args.processor_name_or_path or model_args.model_name_or_path)
        return model, processor
    if model_args.motion_tokenizer is None:
        raise ValueError(
            "--motion_tokenizer is required for a new model (train one with trainers/train_tokenizer.py)."
        )
    structure = resolved_structure(model_args)
    if model_args.backbone_name_or_path and structure == "paper":
        if not model_args.ssl_encoder_name_or_path or not model_args.processor_name_or_path:
            raise ValueError(
                "starting from a backbone needs --ssl_encoder_name_or_path and --processor_name_or_path (a saved "
                "JalaProcessor wrapping the backbone's tokenizer and image processor)."
            )
        model = JalaForMotionPretraining.from_components(
            model_args.backbone_name_or_path,
            model_args.ssl_encoder_name_or_path,
            model_args.motion_tokenizer,
            **_variant_overrides(model_args),
        )
        return model, JalaProcessor.from_pretrained(model_args.processor_name_or_path)
    # A `--structure` model, optionally around a pretrained frozen SSL encoder (its config, weights and
    # preprocessing replace the structure's random encoder) and a small pretrained VLM (its config, weights, tokenizer
    # and image processor replace the structure's random VLM).
    overrides = _variant_overrides(model_args)
    backbone, backbone_image_processor = None, None
    if model_args.backbone_name_or_path:
        backbone, text_tokenizer, backbone_image_processor = load_small_backbone(model_args.backbone_name_or_path)
        overrides.update(vlm_config=backbone.config, backbone_name_or_path=model_args.backbone_name_or_path)
    ssl_encoder, ssl_settings = None, None
    if model_args.ssl_encoder_name_or_path:
        ssl_encoder, ssl_settings = load_ssl_encoder(model_args.ssl_encoder_name_or_path)
        overrides.update(
            ssl_encoder_config=ssl_encoder.config, ssl_encoder_name_or_path=model_args.ssl_encoder_name_or_path
        )
    tokenizer_model = JalaMotionTokenizer.from_pretrained(model_args.motion_tokenizer)
    if model_args.processor_name_or_path:
        processor = JalaProcessor.from_pretrained(model_args.processor_name_or_path)
        text_tokenizer = processor.tokenizer
        if ssl_settings is not None:
            check_ssl_processor(processor, ssl_settings, model_args.ssl_encoder_name_or_path)
    else:
        if backbone is None:
            text_tokenizer = build_word_tokenizer(instructions_of(data_args.dataset))
        processor = None
    config = jala_structure(
        structure,
        vocab_size=len(text_tokenizer),
        image_token_id=text_tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        tokenizer_config=tokenizer_model.config,
        **overrides,
    )
    if processor is None:
        ssl_settings = ssl_settings or {"image_size": config.ssl_encoder_config.image_size}
        processor = build_processor(
            text_tokenizer,
            image_size=config.vlm_config.vision_config.image_size[0],
            ssl_image_size=ssl_settings["image_size"],
            image_seq_length=image_seq_length(config),
            **{f"ssl_{key}": ssl_settings[key] for key in ("image_mean", "image_std") if key in ssl_settings},
        )
        if backbone_image_processor is not None:
            processor.image_processor = backbone_image_processor
    model = JalaForMotionPretraining(config)
    model.set_motion_tokenizer(tokenizer_model)
    if backbone is not None:
        check_backbone_tokens(backbone.config, processor.tokenizer, model_args.backbone_name_or_path)
        model.model.vlm.load_state_dict(backbone.state_dict(), strict=True)
    if ssl_encoder is not None:
        model.model.ssl_encoder.load_state_dict(ssl_encoder.state_dict(), strict=True)
        if any(parameter.requires_grad for parameter in model.model.ssl_encoder.parameters()):
            raise RuntimeError("the SSL encoder must stay frozen in pretraining, but some of its tensors train.")
    return model, processor


def build_datasets(data_args: DataArguments, training_args: TrainingArguments, seed: int, labelled_only: bool = False):
    if not data_args.dataset:
        raise ValueError("--dataset is required: one or more UniHand-Mix folders (python -m dataset_scripts build).")
    domain_weights = None
    if data_args.lab_weight is not None:
        domain_weights = {"lab": data_args.lab_weight, "wild": 1.0 - data_args.lab_weight}
    train = UniHandStream(
        data_args.dataset,
        split="train",
        domain_weights=domain_weights,
        shuffle_buffer_size=data_args.shuffle_buffer_size,
        seed=seed,
    )
    if labelled_only:  # w/o latent, JALA-act: unlabelled clips are not part of the training data at all
        train = LabelledRows(train)
    if data_args.description_share > 0:
        train = DescriptionMixture.from_repos(
            data_args.dataset,
            train,
            data_args.description_share,
            seed=seed,
            shuffle_buffer_size=data_args.shuffle_buffer_size,
        )
    if data_args.group_by_chunks:
        train = ChunkCountBuckets(train, training_args.per_device_train_batch_size, data_args.max_chunks)
    evaluation = None
    if data_args.eval_split and training_args.eval_strategy != "no":
        evaluation = UniHandStream(data_args.dataset, split=data_args.eval_split, infinite=False, shuffle=False)
    return train, evaluation


def parse_arguments(
    argv: list[str] | None = None,
) -> tuple[ModelArguments, DataArguments, JalaTrainingArguments, HubFolderArguments]:
    """The four argument groups; a from-scratch structure brings its own training defaults (e.g. the tiny CPU
    preset), and flags given explicitly win over them."""
    parser = HfArgumentParser((ModelArguments, DataArguments, JalaTrainingArguments, HubFolderArguments))
    known, _ = parser.parse_known_args(args=argv)
    # A tiny structure's trunk knows nothing of motion, around a small backbone too; a JALA folder continues.
    from_scratch = not known.model_name_or_path
    parser.set_defaults(**structure_training_defaults(resolved_structure(known), from_scratch))
    return parser.parse_args_into_dataclasses(args=argv)


def card_metadata(
    model_args: ModelArguments, data_args: DataArguments, hub_args: HubFolderArguments
) -> tuple[str | None, list[str]]:
    """The card's `base_model` (the JALA folder or VLM it started from) and `datasets`, as far as they are Hub ids."""
    started_from = model_args.model_name_or_path or model_args.backbone_name_or_path
    base_model = hub_args.card_base_model or hub_repo_id(started_from)
    return base_model, hub_args.card_datasets or hub_repo_ids(data_args.dataset)


def main(argv: list[str] | None = None) -> Path:
    model_args, data_args, training_args, hub_args = parse_arguments(argv)
    folders = route_checkpoints(training_args, hub_args)
    logging.basicConfig(level=logging.INFO if training_args.process_index == 0 else logging.WARNING)
    set_seed(training_args.seed)
    model, processor = build_model_and_processor(model_args, data_args)
    if model_args.compile_decoder_layers:
        compiled = model.compile_decoder_layers(backend=model_args.compile_decoder_layers)
        logger.info("compiled %d decoder layers (%s)", compiled, model_args.compile_decoder_layers)
    if model_args.init_token_priors and not model_args.model_name_or_path:
        model.init_token_priors(
            training_token_ids(model.motion_tokenizer, data_args.dataset, max_chunks=data_args.max_chunks)
        )
    size = processor.image_processor.size
    row_collator = UniHandCollator(
        image_size=(size["height"], size["width"]), max_chunks=data_args.max_chunks, seed=training_args.seed
    )
    train, evaluation = build_datasets(
        data_args, training_args, training_args.seed, labelled_only=model.config.trains_on_labelled_only
    )
    auxiliaries = []
    if data_args.waypoint_weight > 0:
        from trainers.waypoint_auxiliary import WaypointAuxiliary

        hidden_size = model.config.vlm_config.text_config.hidden_size
        auxiliaries.append(WaypointAuxiliary(hidden_size, data_args.waypoint_weight, device=model.device))
    grounding = None
    if data_args.grounding_weight > 0:
        from trainers.grounding_cotraining import GroundingCoTraining

        grounding = GroundingCoTraining(
            model.model.vlm,
            processor,
            data_args.grounding_weight,
            scenes=data_args.grounding_scenes,
            batch_size=data_args.grounding_batch_size,
            readout_layer=data_args.grounding_readout_layer,
            task=data_args.grounding_task,
            seed=training_args.seed,
        )
        auxiliaries.append(grounding)
    trainer = JalaPretrainTrainer(
        auxiliaries=auxiliaries,
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=JalaPretrainCollator(processor, row_collator),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    output_dir = folders.hub_folder
    arguments = recorded_arguments(training_args, folders)
    history = save_hub_folder(trainer, processor, folders, arguments)
    if trainer.is_world_process_zero():
        plot_training_curves(
            history,
            [
                "loss",
                "mcp_loss",
                "align_loss",
                "description_loss",
                "mcp_accuracy",
                "h_effective_rank",
                "z_effective_rank",
            ],
            output_dir / "training_curve.png",
        )
        plot_layer_accuracy(history, output_dir / "layer_accuracy.png")
        if grounding is not None:
            scores = grounding.evaluate(data_args.dataset[0])
            (output_dir / "grounding_results.json").write_text(json.dumps(scores, indent=2))
            logger.info("grounding after pretraining: %s", json.dumps(scores))
        base_model, datasets = card_metadata(model_args, data_args, hub_args)
        write_jala_card(output_dir, model.config, history, arguments, base_model=base_model, datasets=datasets)
        finish_hub_folder(folders, training_args)
    trainer.accelerator.wait_for_everyone()
    return output_dir


if __name__ == "__main__":
    torch.set_float32_matmul_precision("high")
    main()
