"""Run under `accelerate launch --multi_gpu --num_processes 2`: a few JalaPretrainTrainer steps on CPU (gloo), then
every rank writes its full model state (parameters and EMA-linked perceivers) so the test can compare ranks."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dataset_scripts.collator import UniHandCollator
from trainers.jala_trainer import JalaPretrainTrainer
from trainers.pretrain import (
    DataArguments,
    JalaTrainingArguments,
    ModelArguments,
    build_datasets,
    build_model_and_processor,
)
from trainers.pretrain_collator import JalaPretrainCollator


class DumpState(TrainerCallback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, args, state, control, model=None, **kwargs) -> None:
        unwrapped = model.module if hasattr(model, "module") else model
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in unwrapped.state_dict().items()}
        save_file(tensors, self.folder / f"rank{args.process_index}.safetensors")


def main(repo: str, tokenizer: str, output: str) -> None:
    model_args = ModelArguments(motion_tokenizer=tokenizer, structure="tiny")
    data_args = DataArguments(dataset=[repo], max_chunks=2, shuffle_buffer_size=8, eval_split=None)
    training_args = JalaTrainingArguments(
        output_dir=output,
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
        seed=0,
        ddp_backend="gloo",
    )
    assert training_args.world_size == 2, training_args.world_size
    torch.manual_seed(0)
    model, processor = build_model_and_processor(model_args, data_args)
    size = processor.image_processor.size
    collator = JalaPretrainCollator(
        processor, UniHandCollator(image_size=(size["height"], size["width"]), max_chunks=2)
    )
    train, _ = build_datasets(data_args, training_args, seed=0)
    assert train.world_size == 2 and train.rank == training_args.process_index
    trainer = JalaPretrainTrainer(
        model=model,
        args=training_args,
        train_dataset=train,
        data_collator=collator,
        callbacks=[DumpState(Path(output))],
    )
    trainer.train()


if __name__ == "__main__":
    main(*sys.argv[1:4])
