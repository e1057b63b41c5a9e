"""Strict `from_pretrained` for every JALA model and for the sub-models it loads (e.g. the frozen SSL encoder).

transformers only logs missing or unexpected checkpoint keys and silently initialises what is missing. For a
research model that is the worst failure: it runs, and its numbers are wrong. Every JALA PreTrainedModel mixes
this in, and `strict_from_pretrained` does the same for any class (`AutoModel` included), so a checkpoint that
does not match the architecture exactly is an error naming the keys.
"""

from __future__ import annotations

from typing import Any


def raise_on_loading_problems(info: dict[str, Any], owner: str, source: Any) -> None:
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
        f"{owner}.from_pretrained({source!r}) refuses a checkpoint that does not match the architecture: {listing}. "
        "Check that config.json belongs to these weights (same sizes and transformers/JALA version); JALA never "
        "leaves weights randomly initialised."
    )


def strict_from_pretrained(model_class: Any, pretrained_model_name_or_path: Any, **kwargs: Any) -> Any:
    """`model_class.from_pretrained(path)` (e.g. `AutoModel`) that raises unless every weight loaded exactly."""
    # Let transformers collect shape mismatches (instead of raising a message without key names), so the error
    # can name them; a mismatch is never accepted.
    kwargs["ignore_mismatched_sizes"] = True
    model, info = model_class.from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
    raise_on_loading_problems(info, getattr(model_class, "__name__", str(model_class)), pretrained_model_name_or_path)
    return model


class StrictLoadingMixin:
    """`from_pretrained` that raises on missing, unexpected or shape-mismatched weights."""

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        return_info = kwargs.pop("output_loading_info", False)
        kwargs["ignore_mismatched_sizes"] = True
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
        raise_on_loading_problems(info, cls.__name__, source)
        return (model, info) if return_info else model
