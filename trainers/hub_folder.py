"""What keeps a trained output folder publishable as it is (`huggingface_hub.upload_folder`, docs/design.md §6):
references that keep Hub ids but lose local paths, and a last look for pickles before the folder is handed over.

A local path says nothing to whoever downloads the folder and reveals the machine's directory layout, so recorded
arguments, reports and cards keep only its last folder name ("/data/me/outputs/unihand_mix" -> "unihand_mix"). A
Hub id ("OpenGVLab/InternVL3-2B-hf") stays as it is, and only Hub ids become card metadata (`base_model`,
`datasets`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modeling_jala.configuration_jala import hub_repo_id, shareable_name_or_path

logger = logging.getLogger(__name__)

#: File endings of pickled objects (torch.save, pickle): never part of a Hub folder.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def hub_repo_ids(names_or_paths: Iterable[str | os.PathLike | None]) -> list[str]:
    """The Hub ids among `names_or_paths`, in order, without duplicates."""
    found = [hub_repo_id(value) for value in names_or_paths]
    return list(dict.fromkeys(value for value in found if value))


def _is_local_path(text: str) -> bool:
    """Whether a recorded string is a local path (not a Hub id, URL or plain word such as "cosine")."""
    if "://" in text:
        return False
    if os.path.isabs(text) or text.startswith("~") or ".." in Path(text).parts:
        return True
    return os.sep in text and Path(text).exists()


def portable_values(values: Any) -> Any:
    """`values` (nested dicts / lists of arguments or report entries) with every local path replaced by its folder
    name, for JSON files and cards of a Hub folder."""
    if isinstance(values, dict):
        return {key: portable_values(value) for key, value in values.items()}
    if isinstance(values, list | tuple):
        return [portable_values(value) for value in values]
    if isinstance(values, os.PathLike) or (isinstance(values, str) and _is_local_path(values)):
        return shareable_name_or_path(values)
    return values


def pickled_files(folder: Path) -> list[Path]:
    """Files under `folder` whose name marks a pickle, and Trainer checkpoint folders (which hold them)."""
    found = [path for path in folder.rglob("*") if path.is_file() and path.suffix in PICKLE_SUFFIXES]
    found += [path for path in folder.glob("checkpoint-*") if path.is_dir()]
    return sorted(found)


def warn_if_not_publishable(folder: Path) -> None:
    """Log what would stop `folder` from being uploaded as it is, e.g. leftovers of an older run in the same
    folder (this code writes none)."""
    leftovers = pickled_files(folder)
    if leftovers:
        logger.warning(
            "%s holds pickles or Trainer checkpoints (%s); delete them before uploading the folder.",
            folder,
            ", ".join(str(path.relative_to(folder)) for path in leftovers),
        )
