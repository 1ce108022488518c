"""Every benchmark subject, one after the other, then the report.

    cdul-bench --quick                 # this 2-core CPU: each subject in about 3 minutes or less
    cdul-bench                         # a GPU machine: the full suite
    cdul-bench --only extract,kernel   # some subjects

Each subject runs in its own process (its memory and threads are its own); results append
to benchmarks/results/results.csv and the report is rewritten from it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import click

from cdul.cli.common import version_option

SUBJECTS = (
    "extract",
    "host_ops",
    "scaling",
    "store",
    "memory",
    "train",
    "predict",
    "kernel",
    "resample",
    "dense_attn",
    "refine",
    "export",
)


HELP = """Run cdul's benchmark suites, one subject after the other, each in its own process,
then rewrite benchmarks/results/REPORT.md and its plots from results.csv.

\b
Subjects: extract (ours / naive / encoder limit), host_ops (torch ops and Triton launches
per image outside the towers), scaling, store, memory, train, predict (cdul-predict against
cdul-eval), kernel, resample (the view kernel against its torch reference, torchvision and
PIL), dense_attn (dense mode's last block, fused against written-out attention), refine,
export (label tables from a store).
Speed numbers are ratios measured in one run; absolute times depend on the machine.
"""


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@version_option
@click.option("--quick", is_flag=True, help="CPU-sized runs (each subject in about 3 minutes or less on 2 cores).")
@click.option("--only", default=None, help="Comma list of subjects: " + ", ".join(SUBJECTS))
@click.option("--no-report", is_flag=True, help="Do not rewrite REPORT.md and the plots afterwards.")
def main(quick, only, no_report):
    chosen = only.split(",") if only else list(SUBJECTS)
    unknown = set(chosen) - set(SUBJECTS)
    if unknown:
        raise click.BadParameter(f"unknown subjects {sorted(unknown)}", param_hint="--only")
    failed = []
    for subject in chosen:
        cmd = [sys.executable, "-m", f"cdul.benchmarks.{subject}_bench"] + (["--quick"] if quick else [])
        click.secho(f"== {subject}: {' '.join(cmd[1:])}", bold=True)
        t = time.time()
        if subprocess.run(cmd).returncode != 0:
            failed.append(subject)
        click.echo(f"   {subject} took {time.time() - t:.0f} s")
    if not no_report:
        subprocess.run([sys.executable, "-m", "cdul.benchmarks.report"], check=False)
    if failed:
        raise click.ClickException(f"subjects failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
