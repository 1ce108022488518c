"""python -m cdul.reproduce DATASET ROOT: the command behind scripts/reproduce.sh."""

from __future__ import annotations

import os
import shlex

import click

from cdul.cli.common import CONTEXT, fail
from cdul.data import DatasetError, load_dataset

from .results import write_results
from .steps import SPLITS, Plan, StepError, run_step

HELP = """Reproduce one benchmark of the CDUL paper on the dataset at ROOT (layout of DATASET):
extract the pseudo labels of its training split with CLIP RN50x64 and 3 x 3 snippets, train a
ResNet-101 at 448 px on them, score it on the test split, and write OUT/results.md beside the
numbers the authors of CDUL, CCD, TagCLIP and PIAA report. Each step leaves its output and a
marker in OUT/done/; a rerun skips finished steps and resumes an interrupted one.

\b
Examples:
  bash scripts/reproduce.sh voc2012 data/VOCdevkit --out runs/voc2012
  bash scripts/reproduce.sh nuswide data/nuswide --extract-args "--gpus 0,1" --train-args "--workers 16"
  bash scripts/reproduce.sh voc2007 tests/voc07 --smoke     # tiny random models on the CPU: plumbing only
"""


@click.command(help=HELP, context_settings=CONTEXT)
@click.argument("dataset", type=click.Choice(sorted(SPLITS)))
@click.argument("root")
@click.option("--out", "-o", default=None, help="Folder of the run's files.  [default: runs/reproduce-DATASET]")
@click.option(
    "--smoke",
    is_flag=True,
    help="Tiny random-weight models (cdul-tiny-rn, ResNet-18 at 32 px, 1 epoch) on the CPU: checks every step runs.",
)
@click.option("--extract-args", default="", help='More cdul-extract options, e.g. "--gpus 0,1 --workers 15".')
@click.option("--train-args", default="", help='More cdul-train options, e.g. "--workers 8".')
@click.option("--eval-args", default="", help='More cdul-eval options, e.g. "--batch-size 64".')
def main(dataset, root, out, smoke, extract_args, train_args, eval_args):
    extra = {"extract": shlex.split(extract_args), "train": shlex.split(train_args), "eval": shlex.split(eval_args)}
    plan = Plan(dataset, root, out or os.path.join("runs", f"reproduce-{dataset}"), smoke=smoke, extra=extra)
    if not os.path.isdir(root):
        fail(f"{root}: not a directory (the {dataset} dataset root)")
    if os.path.exists(plan.out) and not os.path.isdir(plan.out):
        fail(f"--out {plan.out} is a file; choose a folder")
    try:  # both splits readable before hours of work
        for split in plan.splits:
            load_dataset(dataset, root, split)
    except DatasetError as exc:
        fail(f"{exc} (--dataset {dataset})")
    commands = plan.commands()
    try:
        for n, (step, command) in enumerate(commands.items(), 1):
            click.echo(f"step {n} of {len(commands) + 1}: {step}", err=True)
            run_step(plan, step, command, log=lambda line: click.echo(line, err=True))
            write_results(plan)  # what is there so far
    except StepError as exc:
        write_results(plan)
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; rerun the same command to resume", code=130)
    click.echo(f"step {len(commands) + 1} of {len(commands) + 1}: results", err=True)
    click.echo(write_results(plan))


if __name__ == "__main__":
    main(prog_name="scripts/reproduce.sh")
