"""JALA training code: Trainer subclasses, callbacks, CLI entry points, metrics and configs."""
