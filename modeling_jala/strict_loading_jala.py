"""Loading JALA folders: strict weights, Hub arguments that reach every sub-folder, errors that name the file.

transformers only logs missing or unexpected checkpoint keys and silently initialises what is missing. For a
research model that is the worst failure: it runs, and its numbers are wrong. Every JALA PreTrainedModel mixes
this in, and `strict_from_pretrained` does the same for any class (`AutoModel` included), so a checkpoint that
does not match the architecture exactly is an error naming the keys and the folder they came from.

A JALA folder holds sub-parts (the `motion_tokenizer/` subfolder, the processor files); whatever says where to
fetch the model from (revision, cache, token, ...) must fetch its sub-parts from the same place, so the list of
those arguments lives here, once (docs/design.md §6).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from safetensors import SafetensorError, safe_open

#: `from_pretrained` arguments that say where and how to fetch files: a model hands them to every sub-folder and
#: processor it loads. `subfolder` is not among them: a sub-part lives in its own subfolder (`join_subfolder`).
HUB_DOWNLOAD_KWARGS = ("cache_dir", "force_download", "local_files_only", "proxies", "revision", "token")


def hub_download_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The Hub arguments among a `from_pretrained` call's `kwargs` (left in place), to pass on to its sub-parts."""
    return {name: kwargs[name] for name in HUB_DOWNLOAD_KWARGS if kwargs.get(name) is not None}


def join_subfolder(*parts: str | os.PathLike | None) -> str:
    """Repository sub-paths joined with "/" (the Hub's separator on every OS); empty parts are skipped."""
    return "/".join(str(part).strip("/") for part in parts if part and str(part).strip("/"))


def describe_location(source: Any, subfolder: str | None = None, revision: str | None = None) -> str:
    """The folder a load read, for error messages: `<local folder>/<subfolder>` or `<repo id>/<subfolder>@<rev>`."""
    if source is None:
        return "<state_dict>"
    if os.path.isdir(str(source)):
        return os.path.join(str(source), subfolder) if subfolder else str(source)
    location = join_subfolder(str(source), subfolder)
    return f"{location}@{revision}" if revision else location


def raise_on_loading_problems(info: dict[str, Any], owner: str, location: str) -> None:
    """Raise a ValueError naming the missing, unexpected and shape-mismatched keys of a loading-info dict."""
    problems = {
        name: sorted(str(key) for key in info.get(name) or ())
        for name in ("missing_keys", "unexpected_keys", "mismatched_keys")
    }
    problems = {name: keys for name, keys in problems.items() if keys}
    if not problems:
        return
    listing = "; ".join(
        f"{name.replace('_', ' ')} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
        for name, keys in problems.items()
    )
    raise ValueError(
        f"{owner}.from_pretrained refuses the checkpoint in {location!r}, which does not match the architecture: "
        f"{listing}. Check that config.json belongs to these weights (same sizes and transformers/JALA version); "
        "JALA never leaves weights randomly initialised."
    )


def _resolved_file(source: str, filename: str, hub: Mapping[str, Any]) -> str | None:
    """A file of a local folder or of the Hub cache (never downloaded here: the failed load already fetched it)."""
    if os.path.isdir(source):
        path = os.path.join(source, filename)
        return path if os.path.isfile(path) else None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, filename, cache_dir=hub.get("cache_dir"), revision=hub.get("revision"))
    return cached if isinstance(cached, str) else None


def _weight_files(source: str, subfolder: str, hub: Mapping[str, Any], variant: str | None) -> list[str]:
    """The safetensors files a load of `source`/`subfolder` reads: the single file, or every shard of the index."""
    stem = f"model.{variant}" if variant else "model"
    single = _resolved_file(source, join_subfolder(subfolder, f"{stem}.safetensors"), hub)
    if single is not None:
        return [single]
    index = _resolved_file(source, join_subfolder(subfolder, f"{stem}.safetensors.index.json"), hub)
    if index is None:
        return []
    try:
        with open(index, encoding="utf-8") as handle:
            shards = sorted(set(json.load(handle)["weight_map"].values()))
    except (OSError, ValueError, KeyError):
        return [index]
    return [path for shard in shards if (path := _resolved_file(source, join_subfolder(subfolder, shard), hub))]


def _unreadable_safetensors(paths: list[str]) -> str | None:
    """The first of `paths` whose safetensors header does not describe the whole file (e.g. a cut download)."""
    for path in paths:
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError):
            return path
    return None


def corrupt_weights_error(source: Any, kwargs: Mapping[str, Any], error: Exception) -> OSError:
    """An OSError naming the incomplete safetensors file behind `error` and how to get a complete one."""
    subfolder = kwargs.get("subfolder") or ""
    hub = hub_download_kwargs(kwargs)
    files = [] if source is None else _weight_files(str(source), subfolder, hub, kwargs.get("variant"))
    broken = _unreadable_safetensors(files)
    folder = describe_location(source, subfolder, kwargs.get("revision"))
    what = broken if broken is not None else f"a safetensors file in {folder!r}"
    return OSError(
        f"{what} is incomplete or corrupt ({error}); an interrupted download or save usually leaves such a file. "
        "Fetch it again with from_pretrained(..., force_download=True) (or delete it from the cache), or save a "
        "local folder again."
    )


def _load_strictly(load: Callable[..., Any], owner: str, args: tuple, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """Run a `from_pretrained` and raise on key problems or an unreadable weights file, naming the folder or file."""
    source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
    # Let transformers collect shape mismatches (instead of raising a message without key names), so the error
    # can name them; a mismatch is never accepted.
    kwargs["ignore_mismatched_sizes"] = True
    try:
        model, info = load(*args, output_loading_info=True, **kwargs)
    except SafetensorError as error:
        raise corrupt_weights_error(source, kwargs, error) from error
    location = describe_location(source, kwargs.get("subfolder"), kwargs.get("revision"))
    raise_on_loading_problems(info, owner, location)
    return model, info


def strict_from_pretrained(model_class: Any, pretrained_model_name_or_path: Any, **kwargs: Any) -> Any:
    """`model_class.from_pretrained(path)` (e.g. `AutoModel`) that raises unless every weight loaded exactly."""
    owner = getattr(model_class, "__name__", str(model_class))
    model, _ = _load_strictly(model_class.from_pretrained, owner, (pretrained_model_name_or_path,), kwargs)
    return model


class StrictLoadingMixin:
    """`from_pretrained` that raises on missing, unexpected or shape-mismatched weights, and on a cut file."""

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        return_info = kwargs.pop("output_loading_info", False)
        model, info = _load_strictly(super().from_pretrained, cls.__name__, args, kwargs)
        return (model, info) if return_info else model
