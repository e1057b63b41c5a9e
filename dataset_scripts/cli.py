"""`python -m dataset_scripts`: build, inspect and preview UniHand-Mix repos.

    python -m dataset_scripts build --output DIR \\
        --source synthetic:domain=lab,split=train,num_clips=1000 \\
        --source synthetic:domain=wild,split=train,num_clips=800 \\
        --source video:root=../shared/data/hands
    python -m dataset_scripts build-default --output DIR      # the mini UniHand-Mix recipe
    python -m dataset_scripts build-datatrove --output DIR --workers 2 --source ...  # same repo, datatrove tasks
    python -m dataset_scripts info DIR                        # counts per config / split / source / task type
    python -m dataset_scripts preview DIR --output preview.png

A source is `name:key=value,key=value`: `name` is a registered source (`build --help` lists them with their
options), each value is converted with the type annotation of the source's constructor argument (int, float,
bool, str, paths, `None`, tuples as `16x32` or `a+b`). `--plugin MODULE` imports a module that registers more
sources (e.g. `--plugin tests.fixtures.unihand_factory` for the test fixture source); packages can also register
through the `jala.unihand_sources` entry point group.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import logging
import os
import pkgutil
import shlex
import sys
import time
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataset_scripts.repo_layout import DATA_DIR, DEFAULT_SHARD_BYTES, DEFAULT_SHARDS_PER_SPLIT

logger = logging.getLogger("dataset_scripts")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HANDS_FOLDER = REPO_ROOT.parent / "shared" / "data" / "hands"
PLUGIN_ENV = "JALA_UNIHAND_PLUGINS"
#: Built-in source modules that failed to import, with the reason (shown by `build --help`).
_UNAVAILABLE: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------------------
# Source discovery and option parsing
# ------------------------------------------------------------------------------------------------------------


def load_sources(plugins: Sequence[str] = ()) -> dict[str, type]:
    """Import every module of `dataset_scripts.sources` (they register themselves), then the plugins.

    A built-in source whose optional dependencies are missing (MuJoCo, a tracker) is reported, not fatal, so the
    other sources stay usable."""
    import dataset_scripts.sources as package
    from dataset_scripts.sources.base import available_sources

    for module in pkgutil.iter_modules(package.__path__):
        if module.name == "base":
            continue
        try:
            importlib.import_module(f"{package.__name__}.{module.name}")
        except Exception as error:
            _UNAVAILABLE[module.name] = f"{type(error).__name__}: {error}"
            logger.debug("source module %s unavailable: %s", module.name, error)
    for plugin in [*os.environ.get(PLUGIN_ENV, "").split(","), *plugins]:
        if plugin.strip():
            importlib.import_module(plugin.strip())
    return available_sources()


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """`X | None` -> (X, True); a union of several types is passed through as text for the source to parse."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [arg for arg in args if arg is not type(None)]
        optional = len(rest) < len(args)
        return (rest[0] if len(rest) == 1 else Any), optional
    return annotation, False


def convert_value(text: str, annotation: Any, where: str) -> Any:
    """Convert one `key=value` string by the constructor annotation; errors name the option and expected type."""
    annotation, optional = _strip_optional(annotation)
    if optional and text.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(annotation)
    try:
        if annotation is inspect.Parameter.empty or annotation is Any or annotation is str:
            return text
        if annotation is bool:
            lowered = text.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError("expected true/false")
            return lowered in ("1", "true", "yes", "on")
        if annotation in (int, float):
            return annotation(text)
        if annotation is Path or (isinstance(annotation, type) and issubclass(annotation, os.PathLike)):
            return Path(text)
        if origin is typing.Literal:
            choices = typing.get_args(annotation)
            if text not in [str(choice) for choice in choices]:
                raise ValueError(f"expected one of {choices}")
            return next(choice for choice in choices if str(choice) == text)
        if origin in (tuple, list):
            args = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
            item = args[0] if args else str
            separators = "x+;" if item in (int, float) else "+;"
            parts = [text]
            for separator in separators:
                parts = [piece for part in parts for piece in part.split(separator)]
            values = [convert_value(part, item, where) for part in parts if part]
            return tuple(values) if origin is tuple else values
    except ValueError as error:
        raise ValueError(f"{where}: cannot read {text!r} as {annotation}: {error}.") from None
    return text


def parse_source_spec(spec: str, sources: dict[str, type]) -> Any:
    """`name:key=value,...` -> an instance of the registered source `name`."""
    name, _, options = spec.partition(":")
    if name not in sources:
        unavailable = f" ({name}: {_UNAVAILABLE[name]})" if name in _UNAVAILABLE else ""
        raise SystemExit(f"unknown source {name!r}{unavailable}; available: {sorted(sources)}. See `build --help`.")
    cls = sources[name]
    signature = inspect.signature(cls.__init__)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:
        hints = {}
    accepted = {key: param for key, param in signature.parameters.items() if key != "self"}
    takes_kwargs = any(param.kind is inspect.Parameter.VAR_KEYWORD for param in accepted.values())
    kwargs: dict[str, Any] = {}
    for item in filter(None, options.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SystemExit(f"source {name!r}: option {item!r} needs the form key=value.")
        if key not in accepted and not takes_kwargs:
            raise SystemExit(
                f"source {name!r} has no option {key!r}; options: {sorted(k for k in accepted if k != 'kwargs')}."
            )
        annotation = hints.get(key, accepted[key].annotation if key in accepted else inspect.Parameter.empty)
        try:
            kwargs[key] = convert_value(value.strip(), annotation, f"source {name!r} option {key!r}")
        except ValueError as error:
            raise SystemExit(str(error)) from None
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise SystemExit(f"source {name!r}: {error}. See `build --help` for its options.") from None


def describe_sources(sources: dict[str, type]) -> str:
    """The epilog of `build --help`: each source, its signature and docstring."""
    lines = ["sources:"]
    for name, cls in sorted(sources.items()):
        signature = str(inspect.signature(cls.__init__)).replace("self, ", "").replace("(self)", "()")
        lines.append(f"  {name}{signature}")
        for doc_line in inspect.cleandoc(cls.__doc__ or "(no docstring)").splitlines():
            lines.append(f"      {doc_line}")
        lines.append("")
    for name, reason in sorted(_UNAVAILABLE.items()):
        lines.append(f"  {name}: unavailable here ({reason})")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------------------


def _builder_options(args: argparse.Namespace) -> dict[str, Any]:
    from dataset_scripts.builder import MotionTokenHook, SslFeatureHook

    ssl_hook = (
        SslFeatureHook(args.ssl_encoder, token_selection=args.ssl_tokens, pool_grid=args.ssl_pool_grid)
        if args.ssl_encoder
        else None
    )
    token_hook = MotionTokenHook(args.motion_tokenizer) if args.motion_tokenizer else None
    return {
        "shard_bytes": args.shard_size,
        "shards_per_split": args.shards_per_split,
        "on_error": args.on_error,
        "ssl_hook": ssl_hook,
        "token_hook": token_hook,
        "overwrite": args.overwrite,
        "preview": not args.no_preview,
        "progress": not args.no_progress,
    }


def _run_build(args: argparse.Namespace, specs: Sequence[str], sources: dict[str, type]) -> int:
    from dataset_scripts.builder import UniHandBuilder
    from dataset_scripts.schema import RowValidationError

    instances = [parse_source_spec(spec, sources) for spec in specs]
    command = "python -m dataset_scripts build --output " + shlex.quote(str(args.output))
    command += "".join(f" --source {shlex.quote(spec)}" for spec in specs)
    builder = UniHandBuilder(args.output, **_builder_options(args))
    try:
        report = builder.build(instances, command=command)
    except RowValidationError as error:
        logger.error(
            "build stopped at row %r, field %r (see above); partial repo in %s", error.row_id, error.field, args.output
        )
        return 2
    rejected = sum(report.rejected.values())
    logger.info(
        "built %s: %d rows, %d shards, %d rejected, %.1f s (%.1f clips/min)",
        args.output,
        report.total_rows,
        len(report.shards),
        rejected,
        report.seconds,
        60 * report.total_rows / max(report.seconds, 1e-9),
    )
    return 0


def default_recipe(
    num_clips: int = 2000,
    hands_folder: str | os.PathLike | None = DEFAULT_HANDS_FOLDER,
    synthetic_source: str = "synthetic",
    video_source: str = "video",
    seed: int = 0,
) -> list[str]:
    """Source specs of the mini UniHand-Mix: procedural lab / wild train clips (50 / 40 %), held-out lab and wild
    test clips (5 % each), and the real clips of `hands_folder` when it exists.

    Lab and wild share the motion families and differ in look and label availability (docs/design.md §4), so
    the wild test split measures what unlabelled wild training adds."""
    shares = {("lab", "train"): 0.50, ("wild", "train"): 0.40, ("lab", "test_lab"): 0.05, ("wild", "test_wild"): 0.05}
    counts = {key: int(round(share * num_clips)) for key, share in shares.items()}
    counts[("lab", "train")] += num_clips - sum(counts.values())
    specs = [
        f"{synthetic_source}:domain={domain},split={split},num_clips={count},seed={seed + index}"
        for index, ((domain, split), count) in enumerate(counts.items())
        if count > 0
    ]
    if hands_folder is not None and Path(hands_folder).is_dir():
        specs.append(f"{video_source}:root={hands_folder}")
    return specs


def _adapt_spec(spec: str, sources: dict[str, type], progress: bool = True) -> str:
    """Fit a recipe spec to the source's constructor: the video folder option may be called `root` or `folder`,
    `seed` is dropped where a source has none, and without MediaPipe the video source runs with `tracker=none`
    (clips kept, unlabelled) instead of failing."""
    name, _, options = spec.partition(":")
    if name not in sources:
        return spec
    accepted = inspect.signature(sources[name].__init__).parameters
    kept = []
    for item in options.split(","):
        key, _, value = item.partition("=")
        if key == "root" and "root" not in accepted and "folder" in accepted:
            key = "folder"
        if key in accepted:
            kept.append(f"{key}={value}")
    if not progress and "progress" in accepted:
        kept.append("progress=false")
    if "tracker" in accepted and importlib.util.find_spec("mediapipe") is None:
        logger.warning("mediapipe is not installed: real clips are ingested unlabelled (tracker=none)")
        kept.append("tracker=none")
    return f"{name}:{','.join(kept)}"


def cmd_build(args: argparse.Namespace, sources: dict[str, type]) -> int:
    return _run_build(args, args.source, sources)


def cmd_build_default(args: argparse.Namespace, sources: dict[str, type]) -> int:
    folder = None if args.no_video else args.hands_folder
    specs = default_recipe(args.num_clips, folder, args.synthetic_source, args.video_source, args.seed)
    specs = [_adapt_spec(spec, sources, progress=not args.no_progress) for spec in specs]
    if folder is not None and not Path(folder).is_dir():
        logger.warning("no real clips at %s; building procedural clips only", folder)
    if args.dry_run:
        sys.stdout.write(
            "python -m dataset_scripts build --output "
            + shlex.quote(str(args.output))
            + "".join(f" \\\n    --source {shlex.quote(spec)}" for spec in specs)
            + "\n"
        )
        return 0
    return _run_build(args, specs, sources)


def _executor_options(args: argparse.Namespace) -> dict[str, Any]:
    """Cluster settings of `build-datatrove` for the executor's constructor (local takes none)."""
    if args.executor == "slurm":
        options: dict[str, Any] = {
            "partition": args.partition,
            "time": args.time,
            "cpus_per_task": args.cpus_per_task,
            "mem_per_cpu_gb": args.mem_per_cpu_gb,
            "job_name": args.job_name,
            "venv_path": args.venv_path,
        }
        if args.sbatch_args:
            options["sbatch_args"] = json.loads(args.sbatch_args)
        return options
    if args.executor == "ray":
        return {"cpus_per_task": args.cpus_per_task, "mem_per_cpu_gb": args.mem_per_cpu_gb}
    return {}


def cmd_build_datatrove(args: argparse.Namespace, sources: dict[str, type]) -> int:
    """`build` as a datatrove pipeline: same repo, many tasks, resumable (dataset_scripts.datatrove_pipeline)."""
    from dataset_scripts import datatrove_pipeline as pipeline
    from dataset_scripts.schema import RowValidationError

    instances = [parse_source_spec(spec, sources) for spec in args.source]
    if args.dry_run:
        tasks = pipeline.plan_tasks(instances, args.units_per_task)
        work = args.work_dir or pipeline.default_work_dir(args.output)
        lines = [f"{len(tasks)} stage-1 tasks ({args.executor} executor, work folder {work}):"]
        lines += [f"  {rank:5d}  {task.describe(instances)}" for rank, task in enumerate(tasks)]
        sys.stdout.write("\n".join(lines) + "\n")
        return 0
    if args.executor == "ray":  # datatrove's Ray executor runs on the cluster this process is connected to
        try:
            import ray
        except ImportError:
            logger.error("--executor ray needs Ray: pip install ray")
            return 1
        ray.init(address=args.ray_address, ignore_reinit_error=True)
    command = "python -m dataset_scripts build-datatrove --output " + shlex.quote(str(args.output))
    command += "".join(f" --source {shlex.quote(spec)}" for spec in args.source)
    hook = {"token_selection": args.ssl_tokens, "pool_grid": args.ssl_pool_grid}
    start = time.perf_counter()
    try:
        info = pipeline.build_with_datatrove(
            args.output,
            instances,
            executor=args.executor,
            workers=args.workers,
            units_per_task=args.units_per_task,
            work_dir=args.work_dir,
            overwrite=args.overwrite,
            shard_bytes=args.shard_size,
            shards_per_split=args.shards_per_split,
            on_error=args.on_error,
            ssl_encoder={"encoder_dir": args.ssl_encoder, **hook} if args.ssl_encoder else None,
            motion_tokenizer={"tokenizer_dir": args.motion_tokenizer} if args.motion_tokenizer else None,
            preview=not args.no_preview,
            progress=not args.no_progress,
            keep_staging=args.keep_staging,
            command=command,
            executor_options=_executor_options(args),
        )
    except (ImportError, FileExistsError) as error:
        logger.error("%s", error)
        return 1
    except RowValidationError as error:
        logger.error(
            "build stopped at row %r, field %r; fix the source and rerun the same command (finished tasks are kept)",
            error.row_id,
            error.field,
        )
        return 2
    if args.executor == "slurm":
        logger.info("submitted; rerun the same command to resume tasks that did not finish")
        return 0
    seconds = time.perf_counter() - start
    rows = int(info.get("rows_written", 0))
    logger.info(
        "built %s: %d rows, %d rejected, %.1f s in this run (%.1f clips/min)",
        args.output,
        rows,
        info.get("rejected", {}).get("count", 0),
        seconds,
        60 * rows / max(seconds, 1e-9),
    )
    return 0


def cmd_info(args: argparse.Namespace, sources: dict[str, type]) -> int:
    from dataset_scripts.card import check_repo, collect_stats, stats_tables, write_card
    from dataset_scripts.repo_layout import read_build_info

    stats = collect_stats(args.repo)
    if not stats.shards:
        logger.error("%s holds no shards under %s/; build it first.", args.repo, DATA_DIR)
        return 1
    if args.write_card:
        write_card(args.repo)
    problems = check_repo(args.repo)
    if args.json:
        payload = {
            "repo": str(args.repo),
            "rows": stats.total_rows,
            "hours": stats.total_hours,
            "labelled_fraction": stats.labelled_fraction,
            "configs": stats.config_table(),
            "sources": stats.summary(("source", "domain", "split")),
            "task_types": stats.summary(("task_type", "domain")),
            "labels": stats.summary(("label_source", "labelled")),
            "shards": [vars(shard) for shard in stats.shards],
            "problems": problems,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        info = read_build_info(args.repo)
        out = [
            f"{args.repo}: {stats.total_rows} clips, {stats.total_hours:.2f} hours, "
            f"{100 * stats.labelled_fraction:.1f} % labelled"
        ]
        if info.get("ssl_encoder"):
            out.append(
                f"ssl_features: {info['ssl_encoder']['model_class']} {tuple(info['ssl_encoder']['feature_shape'])}"
            )
        if info.get("motion_tokenizer"):
            out.append(f"motion_tokens: {info['motion_tokenizer']['tokenizer']}")
        if info.get("rejected", {}).get("count"):
            out.append(f"rejected at build: {info['rejected']['count']} {info['rejected']['by_field']}")
        for title, table in stats_tables(stats).items():
            out += ["", f"{title}:", table]
        out += ["", "card check: " + ("ok" if not problems else f"{len(problems)} problems")]
        sys.stdout.write("\n".join(out + problems) + "\n")
    return 0 if not problems else 1


def cmd_preview(args: argparse.Namespace, sources: dict[str, type]) -> int:
    from dataset_scripts.card import render_preview

    render_preview(args.repo, args.output, clips_per_domain=args.clips, frames_per_clip=args.frames, thumb=args.thumb)
    return 0


# ------------------------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------------------------


def _add_build_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, type=Path, help="repo directory to write")
    shard_size = f"{DEFAULT_SHARD_BYTES // 2**20}MB"
    parser.add_argument(
        "--shard-size", default=shard_size, help=f"target shard size, e.g. 256MB, 500KB (default {shard_size})"
    )
    parser.add_argument(
        "--shards-per-split",
        type=int,
        default=DEFAULT_SHARDS_PER_SPLIT,
        help="parallel shards per domain and split, so every rank / DataLoader worker reads both domains "
        f"(default {DEFAULT_SHARDS_PER_SPLIT})",
    )
    parser.add_argument(
        "--on-error", choices=("raise", "skip"), default="raise", help="stop at an invalid row, or log and skip it"
    )
    parser.add_argument(
        "--ssl-encoder", help="folder of a frozen image encoder (AutoModel) to precompute ssl_features"
    )
    parser.add_argument(
        "--ssl-tokens",
        choices=("patches", "all", "cls"),
        default="patches",
        help="encoder tokens kept (default patches: what the JALA model computes on the fly)",
    )
    parser.add_argument(
        "--ssl-pool-grid", type=int, default=None, help="average-pool patch tokens to GxG (the model's ssl_pool_grid)"
    )
    parser.add_argument(
        "--motion-tokenizer", help="folder of a trained JalaMotionTokenizer to precompute motion_tokens"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing build in --output")
    parser.add_argument("--no-preview", action="store_true", help="do not render preview.png")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def make_parser(sources: dict[str, type]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dataset_scripts",
        description="Build, inspect and preview UniHand-Mix dataset repos (JALA pretraining data).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `python -m dataset_scripts build --help` for the sources and their options.",
    )
    parser.add_argument("--plugin", action="append", default=[], help="module that registers extra sources")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser(
        "build",
        help="sources -> repo directory",
        description="Validate the rows of one or more sources and write a UniHand-Mix repo (shards, card, preview).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=describe_sources(sources),
    )
    build.add_argument(
        "--source", action="append", required=True, metavar="NAME:KEY=VALUE,...", help="a source and its options"
    )
    _add_build_options(build)
    build.set_defaults(func=cmd_build)

    scale = commands.add_parser(
        "build-datatrove",
        help="`build` as a datatrove pipeline (local processes, Slurm or Ray), resumable",
        description=(
            "Build the same repo as `build` from the same --source specs, as datatrove tasks: one task per slice "
            "of input (--units-per-task clips of a splittable source, or a whole source), then one merge task per "
            "domain and split, then the card. Rerun the same command to resume: finished tasks (completion markers "
            "in --work-dir) are skipped. Needs datatrove (pip install 'datatrove>=0.10.1')."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=describe_sources(sources),
    )
    scale.add_argument(
        "--source", action="append", required=True, metavar="NAME:KEY=VALUE,...", help="a source and its options"
    )
    _add_build_options(scale)
    scale.add_argument("--executor", choices=("local", "slurm", "ray"), default="local", help="datatrove executor")
    scale.add_argument("--workers", type=int, default=2, help="tasks run at once (local: processes; default 2)")
    scale.add_argument(
        "--units-per-task",
        type=int,
        default=None,
        help="input per stage-1 task: clips of a procedural source, videos of a video source (default 32, 1)",
    )
    scale.add_argument(
        "--work-dir", type=Path, default=None, help="logs, completion markers, staged rows (default OUTPUT.datatrove)"
    )
    scale.add_argument("--keep-staging", action="store_true", help="keep the staged rows after the repo is written")
    scale.add_argument("--dry-run", action="store_true", help="print the tasks and stop")
    cluster = scale.add_argument_group("cluster (slurm / ray)")
    cluster.add_argument("--partition", default="cpu", help="slurm partition")
    cluster.add_argument("--time", default="04:00:00", help="slurm time limit per task")
    cluster.add_argument("--cpus-per-task", type=int, default=1, help="CPUs per task (slurm, ray)")
    cluster.add_argument("--mem-per-cpu-gb", type=float, default=4, help="memory per CPU in GB (slurm, ray)")
    cluster.add_argument("--job-name", default="unihand_mix", help="slurm job name")
    cluster.add_argument("--venv-path", default=sys.prefix, help="venv activated in slurm jobs (default: this one)")
    cluster.add_argument("--sbatch-args", default=None, help='extra sbatch options as JSON, e.g. {"account": "x"}')
    cluster.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray instance)"
    )
    scale.set_defaults(func=cmd_build_datatrove)

    default = commands.add_parser(
        "build-default",
        help="the mini UniHand-Mix recipe",
        description=inspect.cleandoc(default_recipe.__doc__ or ""),
    )
    default.add_argument("--num-clips", type=int, default=2000, help="procedural clips in all (default 2000)")
    default.add_argument("--hands-folder", type=Path, default=DEFAULT_HANDS_FOLDER, help="real clips to ingest")
    default.add_argument("--no-video", action="store_true", help="procedural clips only")
    default.add_argument("--synthetic-source", default="synthetic", help="source for procedural clips")
    default.add_argument("--video-source", default="video", help="source for the real clips")
    default.add_argument("--seed", type=int, default=0, help="base seed of the procedural sources")
    default.add_argument("--dry-run", action="store_true", help="print the equivalent build command and stop")
    _add_build_options(default)
    default.set_defaults(func=cmd_build_default)

    info = commands.add_parser("info", help="counts per config / split / source / task type, hours, shard sizes")
    info.add_argument("repo", type=Path)
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--write-card", action="store_true", help="rewrite README.md from the shards first")
    info.set_defaults(func=cmd_info)

    preview = commands.add_parser("preview", help="lab-vs-wild contact sheet PNG with skeleton overlays")
    preview.add_argument("repo", type=Path)
    preview.add_argument("--output", type=Path, required=True, help="PNG path")
    preview.add_argument("--clips", type=int, default=3, help="clips per domain")
    preview.add_argument("--frames", type=int, default=5, help="boundary frames per clip")
    preview.add_argument("--thumb", type=int, default=144, help="thumbnail size in pixels")
    preview.set_defaults(func=cmd_preview)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Plugins register sources that `build --help` must list, so they are imported before the full parse.
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--plugin", action="append", default=[])
    early.add_argument("-v", "--verbose", action="store_true")
    known, _ = early.parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if known.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    sources = load_sources(known.plugin)
    args = make_parser(sources).parse_args(argv)
    return int(args.func(args, sources))
