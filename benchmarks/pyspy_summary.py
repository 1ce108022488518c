"""A short text summary of a py-spy ``--format raw`` profile (``--threads``, optionally
``--subprocesses`` and ``--idle``): per process and thread, the share of samples, the
functions where time is spent (self) and the calls that hold it (inclusive).

    python -m cdul.benchmarks.pyspy_summary profile.txt [--top 15]
"""

from __future__ import annotations

import collections
import re

import click

_PROC = re.compile(r"^process (\d+)")


def _frame(f: str) -> str:
    """'name (path/file.py:12)' -> 'name (file.py:12)'."""
    m = re.match(r"^(.*) \((.*?)(?::(\d+))?\)$", f)
    if not m:
        return f
    name, path, line = m.groups()
    return f"{name} ({path.rsplit('/', 1)[-1]}{':' + line if line else ''})"


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--top", type=int, default=15)
def main(path, top):
    groups: dict = collections.defaultdict(lambda: [0, collections.Counter(), collections.Counter()])
    per_process: collections.Counter = collections.Counter()
    total = 0
    with open(path, errors="replace") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            pid = "?"
            while frames and _PROC.match(frames[0]):  # a child's stacks start with its parents'
                pid = _PROC.match(frames[0]).group(1)
                frames = frames[1:]
            thread = "thread ?"
            if frames and frames[0].startswith("thread"):
                tid, _, name = frames[0][len("thread ") :].partition(": ")
                thread = name or ("MainThread" if tid.strip("()") == pid else f"thread {tid}")
                frames = frames[1:]
            frames = [_frame(x) for x in frames]
            per_process[pid] += n
            g = groups[(pid, thread)]
            g[0] += n
            if frames:
                g[1][frames[-1]] += n
            for fr in set(frames):
                g[2][fr] += n
            total += n
    main_pid = min(per_process, key=lambda p: int(p) if p.isdigit() else 1 << 62)
    click.echo(f"{total} samples; {len(per_process)} processes; main process {main_pid}")
    others = [p for p in per_process if p != main_pid]
    click.echo(
        f"main process {100 * per_process[main_pid] / total:.1f}%, the {len(others)} others together "
        f"{100 * sum(per_process[p] for p in others) / total:.1f}%"
    )
    merged: dict = collections.defaultdict(lambda: [0, collections.Counter(), collections.Counter()])
    for (pid, thread), g in groups.items():
        key = (pid, thread) if pid == main_pid else ("others", "all threads")
        m = merged[key]
        m[0] += g[0]
        m[1].update(g[1])
        m[2].update(g[2])
    for (pid, thread), (n, self_, incl) in sorted(merged.items(), key=lambda kv: -kv[1][0]):
        if n < 0.01 * total:
            continue
        click.echo(f"\n== process {pid}, {thread}: {n} samples")
        click.echo("  self:")
        for fr, c in self_.most_common(top):
            click.echo(f"    {100 * c / n:5.1f}%  {fr}")
        click.echo("  inclusive:")
        shown = [(fr, c) for fr, c in incl.most_common() if c < 0.95 * n][: top + 10]  # not the whole stack's base
        for fr, c in shown:
            click.echo(f"    {100 * c / n:5.1f}%  {fr}")


if __name__ == "__main__":
    main()
