"""Small things every command shares."""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import NoReturn

import click

from cdul.trainer.config import TrainConfig

from .options import cpu_capped, record_option

CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 100}


def versions() -> str:
    """cdul's version and those of the packages that decide its numbers, read from the
    installed metadata (nothing is imported, so --version answers at once)."""
    from cdul import __version__

    def installed(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"cdul {__version__} (torch {installed('torch')}, torchvision {installed('torchvision')}, "
        f"open_clip {installed('open_clip_torch')}, Python {platform.python_version()})"
    )


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"{ctx.info_name}: {versions()}")
        ctx.exit()


# Every command takes it: one line under @click.command.
version_option = click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Print the versions of cdul, torch, torchvision, open_clip and Python, and exit.",
)


def _load_config(ctx: click.Context, _param, path: str | None) -> None:
    """--config FILE: its keys become the command's defaults (click's default_map), so
    options given on the command line win. YAML or JSON (YAML reads both)."""
    if not path or ctx.resilient_parsing:
        return
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        fail(f"--config {path}: {str(exc).splitlines()[0]}")
    if values is None:
        values = {}
    if not isinstance(values, dict):
        fail(f"--config {path}: expected a mapping of option names to values, found {type(values).__name__}")
    names = {p.name for p in ctx.command.params if p.name and p.expose_value}
    given = {str(k).lstrip("-").replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(str(k) for k in values if str(k).lstrip("-").replace("-", "_") not in names)
    if unknown:
        fail(f"--config {path}: unknown options {', '.join(unknown)} (see {ctx.info_name} --help)")
    ctx.default_map = {**(ctx.default_map or {}), **given}


# cdul-train and cdul-extract take it: one line under @click.command.
config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_config,
    help="A YAML or JSON file of option values, keyed by option name (dashes or underscores); options on "
    "the command line win. E.g. --config run.yaml holding 'epochs: 30' and 'img-size: 224'.",
)


follow_symlinks_option = click.option(
    "--follow-symlinks",
    is_flag=True,
    help="Read images through symbolic links that lead outside the dataset root (refused otherwise).",
)

# Options cdul-train, cdul-eval and cdul-predict share: declared once (name, type), their
# defaults those of the training record (TrainConfig); where the help says something about the
# command, each command gives its own.
device_option = record_option(TrainConfig, "device", "--device", help="auto (CUDA if there is one), cpu, cuda, cuda:N.")


def ap_option(what: str):
    from cdul.metrics import PROTOCOLS

    return click.option(
        "--ap",
        type=click.Choice(PROTOCOLS),
        default=None,
        help=f"AP protocol of {what}: all-points (area under the precision-recall curve) or voc07-11pt (the "
        "VOC 2007 devkit's 11-point AP), e.g. --ap voc07-11pt.  [default: voc07-11pt for voc2007, all-points "
        "for the other datasets]",
    )


def difficult_option(help: str):
    return record_option(TrainConfig, "difficult", "--difficult", help=help)


def threshold_option(help: str):
    return record_option(TrainConfig, "threshold", "--threshold", type=click.FloatRange(0.0, 1.0), help=help)


def decision_options(command):
    """``--threshold`` and ``--top-k``, which decide an image's labels from its scores (see
    cdul/labels/decide.py), handed to the command as one ``decision`` argument (a Decision).
    Out-of-range values stop the command with one line."""
    from cdul.labels import Decision

    @functools.wraps(command)
    def with_decision(*args, threshold, top_k, **kwargs):
        try:
            decision = Decision(threshold=threshold, top_k=top_k)
        except ValueError as exc:
            fail(str(exc))
        return command(*args, decision=decision, **kwargs)

    with_decision = record_option(
        Decision,
        "top_k",
        "--top-k",
        type=int,
        help="Keep each image's K best-scoring classes (K >= 1), e.g. --top-k 3.",
    )(with_decision)
    return record_option(
        Decision,
        "threshold",
        "--threshold",
        type=float,
        show_default=False,
        help="Keep the classes scoring at least T (0 to 1), e.g. --threshold 0.3. Default, without --threshold "
        "and --top-k: each image's top class and every class scoring at least half as much (soft labels sum "
        "to about 1 an image, so a fixed 0.5 keeps one class at most).",
    )(with_decision)


def batch_size_option(help: str, *, record=None, default: int | None = None):
    """--batch-size: its default from ``record``'s ``batch_size`` (a dataclass or a function), or
    ``default`` for a command with no record."""
    decls, kind = ("--batch-size", "-b"), click.IntRange(min=1)
    if record is None:
        return click.option(*decls, type=kind, default=default, help=help)
    return record_option(record, "batch_size", *decls, type=kind, help=help)


def default_workers() -> int:
    """DataLoader processes by default: the training record's, at most one per CPU."""
    return cpu_capped(TrainConfig.workers)


def workers_option(help: str):
    return record_option(TrainConfig, "workers", "--workers", derive=cpu_capped, type=click.IntRange(min=0), help=help)


def amp_option(help: str):
    return record_option(TrainConfig, "amp", "--amp", help=help)


def option_args(options: dict) -> list[str]:
    """Command-line options from keywords: underscores for dashes; True gives a flag, None or
    False leaves the option out, to the command's default."""
    args = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        args.append("--" + name.replace("_", "-"))
        if value is not True:
            args.append(str(value))
    return args


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


class CommandFailed(SystemExit):
    """What ``fail`` raises: the command's exit with its status, carrying its one-line message
    (so a caller running the command in-process, as cdul.api does, can raise it on)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(code)
        self.message = message


_SILENT = contextvars.ContextVar("silent_failures", default=False)


@contextlib.contextmanager
def silent_failures():
    """Inside: ``fail`` raises CommandFailed without printing the message."""
    token = _SILENT.set(True)
    try:
        yield
    finally:
        _SILENT.reset(token)


def note(message: str) -> None:
    """An option the command adjusted (a size clamped to what the data allows)."""
    click.echo(f"note: {message}", err=True)


# How a store's ``model`` attributes (and a checkpoint's ``clip`` entry) name random CLIP weights.
RANDOM_WEIGHTS = ("none", "random")


def warn_random_clip(what: str, model: object) -> None:
    """One line on stderr when ``model`` (a store's model attributes) says the CLIP had random
    weights: every score and pseudo label made from it is meaningless. Only rank 0 says it."""
    pretrained = model.get("pretrained") if isinstance(model, Mapping) else None
    if str(pretrained).lower() in RANDOM_WEIGHTS and os.environ.get("RANK", "0") == "0":
        warn(
            f"{what} comes from a CLIP with random weights (--pretrained {pretrained}): its scores and labels "
            "are meaningless; extract with real weights for real results"
        )


def warn_random_store(url: str) -> None:
    """:func:`warn_random_clip` for the store at ``url``; says nothing where it cannot be
    opened (the command reports that itself)."""
    from cdul.store import Store, StoreError

    try:
        model = Store.open(url).section("model")
    except (StoreError, OSError, ValueError):
        return
    warn_random_clip(url, model)


def fail(message: str, code: int = 1) -> NoReturn:
    if not _SILENT.get():
        click.secho(f"Error: {message}", fg="red", err=True)
    raise CommandFailed(message, code)


def write_error(store_url: str, exc: OSError) -> str:
    """One line for an OSError met writing to a store: a full disk and a read-only store say
    so (the store is left as it was: a label round appears only complete)."""
    if exc.errno == errno.ENOSPC:
        return f"{store_url}: the disk is full ({exc.filename or 'writing'}); free some space and rerun"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{store_url} is read-only ({exc.strerror}); copy the store somewhere writable and rerun"
    return f"{store_url}: {exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}"


def table(rows: list[tuple], header: tuple | None = None) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    if header:
        rows = [tuple(header), *rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class FailureLimit(click.ParamType):
    """A count ("25") or a share of the images ("1%")."""

    name = "N|P%"

    def convert(self, value, param, ctx):
        if isinstance(value, FailureLimit.Limit):
            return value
        text = str(value).strip()
        try:
            number = float(text[:-1]) if text.endswith("%") else int(text)
        except ValueError:
            self.fail(f"{value!r} is neither a count (25) nor a percentage (1%)", param, ctx)
        if number < 0 or (text.endswith("%") and number > 100):
            self.fail(f"{value!r} is out of range", param, ctx)
        return FailureLimit.Limit(number, text.endswith("%"))

    class Limit:
        def __init__(self, number, percent: bool):
            self.number, self.percent = number, percent

        def allowed(self, n_images: int) -> int:
            return int(n_images * self.number / 100) if self.percent else int(self.number)
