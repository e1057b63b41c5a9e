"""JalaProcessor: instruction + first frame -> the prefix inputs of a JALA model.

The VLM reads `[instruction][<img> <IMG_CONTEXT> x image_seq_length </img>]`, left-padded so that every sample's
motion blocks start right after its prefix; the first frame is also preprocessed for the frozen SSL encoder
(DINOv3 / V-JEPA2 normalisation), whose features feed the latent state perceiver. Motion itself is not text:
its token ids go to the model directly (see `JalaForMotionPretraining.forward`).

A robot policy may see several cameras per sample (an external and a wrist camera): each gets its own image block,
in the policy's camera order, and the SSL encoder reads the first (primary) camera only — the view the latent
state perceiver summarised in pretraining (docs/design.md §1.11).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import BatchFeature, PreTrainedConfig
from transformers.processing_utils import ProcessorMixin

from .configuration_jala import JalaConfig
from .layout_jala import IGNORE_TOKEN_ID
from .strict_loading_jala import hub_download_kwargs

#: The prefix text of a motion-description sample (docs/design.md §1.13): the description is the target, so the
#: instruction slot holds this fixed request instead.
DESCRIPTION_PROMPT = "Describe the hand motion."


#: PIL resampling filters (`PILImageResampling` values) -> `torch.nn.functional.interpolate` modes.
_TORCH_RESAMPLE = {2: "bilinear", 3: "bicubic"}


def _size_of(image_processor: Any) -> tuple[int, int]:
    size = image_processor.size
    height = getattr(size, "height", None) if not isinstance(size, dict) else size.get("height")
    width = getattr(size, "width", None) if not isinstance(size, dict) else size.get("width")
    if not height or not width:
        raise ValueError(
            f"{type(image_processor).__name__}.size={size} has no fixed height and width; the tensor path "
            "resizes to a fixed size. Pass PIL images or numpy arrays instead."
        )
    return int(height), int(width)


def preprocess_frame_tensors(frames: Tensor, image_processor: Any) -> Tensor:
    """(B, H, W, 3) uint8 frames on any device -> (B, 3, h, w) float32 pixel values, as `image_processor` makes them
    from PIL images — resize (antialiased, then rounded to 8 bits as PIL's resize of an 8-bit image is), rescale,
    normalise — but as tensor ops on the frames' device: no PIL round trip and no copy to the host.

    Only what JALA's processors do is supported (a fixed size, bilinear or bicubic, no crop or tiling); anything
    else is an error naming the setting.
    """
    if frames.dim() != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(
            f"frames must be a (batch, height, width, 3) uint8 tensor, got {tuple(frames.shape)} {frames.dtype}."
        )
    for setting in ("do_center_crop", "crop_to_patches", "do_pad"):
        if getattr(image_processor, setting, None):
            raise ValueError(
                f"{type(image_processor).__name__}.{setting}=True is not supported by the tensor path; pass PIL "
                "images or numpy arrays, or configure the processor without it."
            )
    height, width = _size_of(image_processor)
    pixels = frames.permute(0, 3, 1, 2).float()
    if getattr(image_processor, "do_resize", True) and tuple(pixels.shape[-2:]) != (height, width):
        resample = int(getattr(image_processor, "resample", 2))
        if resample not in _TORCH_RESAMPLE:
            raise ValueError(
                f"{type(image_processor).__name__}.resample={resample} has no tensor equivalent here; use "
                "bilinear (2) or bicubic (3), or pass PIL images."
            )
        pixels = F.interpolate(pixels, size=(height, width), mode=_TORCH_RESAMPLE[resample], antialias=True)
        pixels = pixels.round().clamp(0, 255)
    if getattr(image_processor, "do_rescale", True):
        pixels = pixels * float(image_processor.rescale_factor)
    if getattr(image_processor, "do_normalize", True):
        mean = torch.tensor(image_processor.image_mean, device=pixels.device)[None, :, None, None]
        std = torch.tensor(image_processor.image_std, device=pixels.device)[None, :, None, None]
        pixels = (pixels - mean) / std
    return pixels


class JalaProcessor(ProcessorMixin):
    """Wraps the VLM's image processor and tokenizer plus the SSL encoder's image processor.

    Args:
        image_processor: the VLM's image processor (InternVL: GotOcr2 image processor without tiling).
        ssl_image_processor: preprocessing of the frozen SSL encoder (DINOv3: 224 px, ImageNet mean/std).
        tokenizer: the VLM's tokenizer; must know `image_token`, `image_start_token` and `image_end_token`.
        image_seq_length: image tokens the VLM's vision tower + projector emit per frame.
        image_token / image_start_token / image_end_token: InternVL's `<IMG_CONTEXT>`, `<img>`, `</img>`.
    """

    def __init__(
        self,
        image_processor: Any = None,
        ssl_image_processor: Any = None,
        tokenizer: Any = None,
        image_seq_length: int = 256,
        image_token: str = "<IMG_CONTEXT>",
        image_start_token: str = "<img>",
        image_end_token: str = "</img>",
        **kwargs: Any,
    ) -> None:
        self.image_seq_length = image_seq_length
        self.image_token = image_token
        self.image_start_token = image_start_token
        self.image_end_token = image_end_token
        super().__init__(image_processor, ssl_image_processor, tokenizer, **kwargs)
        vocabulary = self.tokenizer.get_vocab()
        missing = [token for token in (image_token, image_start_token, image_end_token) if token not in vocabulary]
        if missing:
            raise ValueError(
                f"the tokenizer does not know {missing}; add them as special tokens (tokenizer.add_special_tokens) "
                "or pass the backbone's own image token names to JalaProcessor."
            )
        self.image_token_id = vocabulary[image_token]

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> JalaProcessor:
        """`ProcessorMixin.from_pretrained`, handing the folder's config to the sub-loaders.

        transformers' AutoTokenizer otherwise resolves the folder's `config.json` through AutoConfig, whose
        `auto_map` points at remote code and makes it prompt for `trust_remote_code` — for the config of the
        model this processor ships with. The JALA config is read with its own class instead, from the same
        revision, cache and subfolder as the processor files (docs/design.md §6).
        """
        if "config" not in kwargs:
            subfolder = kwargs.get("subfolder") or ""
            download = hub_download_kwargs(kwargs)
            try:
                kwargs["config"] = JalaConfig.from_pretrained(
                    pretrained_model_name_or_path, subfolder=subfolder, **download
                )
            except (OSError, ValueError):
                kwargs["config"] = PreTrainedConfig()
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    def prompt(self, instruction: str, num_images: int = 1) -> str:
        """Instruction, then one image block per camera (paper: [x, v_1, ...])."""
        image_block = self.image_start_token + self.image_token * self.image_seq_length + self.image_end_token
        return f"{instruction.strip()}\n" + "\n".join([image_block] * num_images)

    def encode_prompts(self, texts: Sequence[str], num_images: int = 1, return_tensors: str | None = "pt") -> Any:
        """Tokenised prompts (`input_ids`, `attention_mask`, left-padded) for instructions with `num_images` image
        blocks each — the text half of `__call__`, for callers whose image inputs were computed earlier."""
        return self.tokenizer(
            [self.prompt(instruction, num_images) for instruction in texts],
            padding=True,
            padding_side="left",
            return_tensors=return_tensors,
            add_special_tokens=False,
        )

    def description_token_ids(self) -> tuple[int, int]:
        """(start, end) ids around a description. End: the tokenizer's EOS, or its pad token when it has none (the
        from-scratch word tokenizers); start: its BOS, else the end token (GPT-2's convention of one separator)."""
        end = self.tokenizer.eos_token_id
        if end is None:
            end = self.tokenizer.pad_token_id
        if end is None:
            raise ValueError(
                "the tokenizer has neither an EOS nor a pad token to end a description; add an EOS token."
            )
        start = self.tokenizer.bos_token_id
        return (end if start is None else start), end

    def description_targets(self, descriptions: Sequence[str]) -> BatchFeature:
        """Description texts -> `description_ids` (B, L) `[start] text [end]`, right-padded; `description_mask`
        (B, L) True at real tokens; `description_labels` (B, L): the ids where a token is predicted (text and end),
        IGNORE_TOKEN_ID at the start token and at padding, so only description tokens carry the loss."""
        start, end = self.description_token_ids()
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else end
        rows = [
            [start, *self.tokenizer(text.strip(), add_special_tokens=False)["input_ids"], end] for text in descriptions
        ]
        length = max(len(row) for row in rows)
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        real_token = torch.zeros(len(rows), length, dtype=torch.bool)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row)
            real_token[index, : len(row)] = True
        labels = ids.masked_fill(~real_token, IGNORE_TOKEN_ID)
        labels[:, 0] = IGNORE_TOKEN_ID
        return BatchFeature(
            {"description_ids": ids, "description_mask": real_token, "description_labels": labels}, tensor_type="pt"
        )

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> BatchFeature:
        """Returns `input_ids`, `attention_mask` (left-padded), `pixel_values` (B * cameras, C, H, W: sample-major)
        and `ssl_pixel_values` (B, C, H', W': the first camera).

        `images`: one image or a list (PIL / numpy, through the image processors), or a uint8 tensor (H, W, 3) /
        (B, H, W, 3) on any device, preprocessed there by `preprocess_frame_tensors` (pixel values stay on it).
        Several cameras per sample: a list of per-sample lists (one image per camera, same count in every sample)
        or a uint8 tensor (B, cameras, H, W, 3)."""
        if images is None or text is None:
            raise ValueError("JalaProcessor needs both images (one first frame per sample) and text (instructions).")
        texts = [text] if isinstance(text, str) else list(text)
        on_device = isinstance(images, Tensor)
        if on_device:
            frames = images[None] if images.dim() == 3 else images
            cameras = frames.shape[1] if frames.dim() == 5 else 1
            frames = frames if frames.dim() == 5 else frames[:, None]
            return_tensors = "pt"
        else:
            frames = list(images) if isinstance(images, list | tuple) else [images]
            frames = [list(sample) if isinstance(sample, list | tuple) else [sample] for sample in frames]
            cameras = len(frames[0]) if frames else 1
            if any(len(sample) != cameras for sample in frames):
                raise ValueError(
                    f"samples have {sorted({len(sample) for sample in frames})} camera images; pass the same cameras "
                    "(in the same order) for every sample."
                )
        if len(frames) != len(texts):
            raise ValueError(f"got {len(frames)} images for {len(texts)} instructions; pass one first frame each.")
        encoded = self.encode_prompts(texts, cameras, return_tensors)
        if on_device:
            pixel_values = preprocess_frame_tensors(frames.flatten(0, 1), self.image_processor)
            ssl_pixel_values = preprocess_frame_tensors(frames[:, 0], self.ssl_image_processor)
        else:
            every_camera = [image for sample in frames for image in sample]
            pixel_values = self.image_processor(images=every_camera, return_tensors=return_tensors)["pixel_values"]
            primary = [sample[0] for sample in frames]
            ssl_pixel_values = self.ssl_image_processor(images=primary, return_tensors=return_tensors)["pixel_values"]
        if pixel_values.shape[0] != len(texts) * cameras:
            raise ValueError(
                "the VLM image processor produced several tiles per image; JALA reads one first frame per sample, "
                "so configure it without tiling (crop_to_patches=False)."
            )
        return BatchFeature(
            {
                "input_ids": encoded["input_ids"],
                "attention_mask": encoded["attention_mask"],
                "pixel_values": pixel_values,
                "ssl_pixel_values": ssl_pixel_values,
            },
            tensor_type=return_tensors,
        )


__all__ = ["DESCRIPTION_PROMPT", "JalaProcessor", "preprocess_frame_tensors"]
