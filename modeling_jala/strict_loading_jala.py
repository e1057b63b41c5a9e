"""Strict `from_pretrained` for every JALA model.

transformers only logs missing or unexpected checkpoint keys and silently initialises what is missing. For a
research model that is the worst failure: it runs, and its numbers are wrong. Every JALA PreTrainedModel mixes
this in, so a checkpoint that does not match the architecture exactly is an error naming the keys.
"""

from __future__ import annotations

from typing import Any


class StrictLoadingMixin:
    """`from_pretrained` that raises on missing, unexpected or shape-mismatched weights."""

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> Any:
        return_info = kwargs.pop("output_loading_info", False)
        # Let transformers collect shape mismatches (instead of raising a message without key names), so the
        # error below can name them; a mismatch is never accepted.
        kwargs["ignore_mismatched_sizes"] = True
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        problems = {
            name: sorted(str(key) for key in info.get(name) or ())
            for name in ("missing_keys", "unexpected_keys", "mismatched_keys")
        }
        problems = {name: keys for name, keys in problems.items() if keys}
        if problems:
            listing = "; ".join(
                f"{name.replace('_', ' ')} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"
                for name, keys in problems.items()
            )
            source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
            raise ValueError(
                f"{cls.__name__}.from_pretrained({source!r}) refuses a checkpoint that does not match the "
                f"architecture: {listing}. Check that config.json belongs to these weights (same sizes and "
                "transformers/JALA version); JALA never leaves weights randomly initialised."
            )
        return (model, info) if return_info else model
