"""Benchmark results CSV -> a markdown table per subject and PNG plots.

    python -m cdul.benchmarks.report [--csv benchmarks/results/results.csv] [--out benchmarks/results]

For each subject and device it keeps the latest run (ratios are only compared within one
run), and writes ``<out>/REPORT.md`` and ``<out>/<subject>.png``.
"""

from __future__ import annotations

import csv
import json
import os
from collections import OrderedDict, defaultdict

import click

from cdul.data.fs import atomic_write_text

from .common import RESULTS_CSV, RESULTS_DIR


def load(path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["params"] = json.loads(r["params"])
        r["value"] = float(r["value"])
    return rows


def latest_runs(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """(subject, device) -> the rows of its latest run."""
    last: dict[tuple[str, str], str] = {}
    for r in rows:  # rows are appended in time order
        last[(r["subject"], r["device"])] = r["run_id"]
    out = defaultdict(list)
    for r in rows:
        if last[(r["subject"], r["device"])] == r["run_id"]:
            out[(r["subject"], r["device"])].append(r)
    return out


def _param_text(params: dict, drop=("device",)) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if k not in drop)


def table(rows: list[dict]) -> str:
    groups: OrderedDict = OrderedDict()
    metrics: list[str] = []
    for r in rows:
        key = (_param_text(r["params"]), r["variant"])
        groups.setdefault(key, {})[r["metric"]] = (r["value"], r["unit"])
        if r["metric"] not in metrics:
            metrics.append(r["metric"])
    lines = ["| parameters | variant | " + " | ".join(metrics) + " |", "|---|---|" + "---:|" * len(metrics)]
    for (params, variant), vals in groups.items():
        cells = [f"{vals[m][0]:.4g} {vals[m][1]}" if m in vals else "" for m in metrics]
        lines.append(f"| {params} | {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(subject: str, rows: list[dict], path: str) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = {
        "extract": "images_per_s",
        "kernel": "time",
        "resample": "time",
        "store": "write_MB_per_s",
        "scaling": "images_per_s",
        "memory": "peak_rss_MB",
        "train": "images_per_s",
        "refine": "seconds",
    }.get(subject)
    pts = [r for r in rows if r["metric"] == metric]
    if not pts:
        return False
    # label the bars with the parameters that vary between them
    keys = list(OrderedDict.fromkeys(k for r in pts for k in r["params"]))
    varying = [k for k in keys if len({json.dumps(r["params"].get(k)) for r in pts}) > 1]
    labels = OrderedDict()
    for r in pts:
        text = ", ".join(f"{k}={r['params'].get(k)}" for k in varying) or r["variant"]
        labels.setdefault(text, {})[r["variant"]] = r["value"]
    variants = list(OrderedDict.fromkeys(r["variant"] for r in pts))
    fig, ax = plt.subplots(figsize=(min(16, max(6, 0.35 * len(labels) * max(1, len(variants)) + 2)), 4.2))
    width = 0.8 / len(variants)
    for i, v in enumerate(variants):
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [vals.get(v, 0) for vals in labels.values()], width, label=v)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
    ax.set_xticklabels(list(labels), rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(f"{metric} ({pts[0]['unit']})")
    if subject in ("kernel", "resample"):
        ax.set_yscale("log")
    ax.set_title(f"{subject} on {pts[0]['device']}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


@click.command()
@click.option("--csv", "csv_path", default=str(RESULTS_CSV))
@click.option("--out", "out_dir", default=str(RESULTS_DIR))
def main(csv_path, out_dir):
    rows = load(csv_path)
    runs = latest_runs(rows)
    parts = [
        "# Benchmark results",
        "",
        f"From `{os.path.relpath(csv_path, out_dir)}`: the latest run of each subject on each device. "
        "Ratios compare variants measured in the same run.",
        "",
    ]
    for (subject, device), rs in sorted(runs.items()):
        parts += [
            f"## {subject} — {device}",
            "",
            f"run `{rs[0]['run_id']}`, {rs[0]['timestamp']}, code {rs[0]['code_version']}",
            "",
            table(rs),
            "",
        ]
        name = f"{subject}-{''.join(ch if ch.isalnum() else '_' for ch in device)[:40]}.png"
        if plot(subject, rs, os.path.join(out_dir, name)):
            parts += [f"![{subject}]({name})", ""]
    notes = os.path.join(out_dir, "NOTES.md")
    if os.path.exists(notes):
        with open(notes) as f:
            parts += ["## Notes and profiles", "", f.read()]
    atomic_write_text(os.path.join(out_dir, "REPORT.md"), "\n".join(parts) + "\n")
    click.echo(f"wrote {os.path.join(out_dir, 'REPORT.md')} ({len(runs)} subject/device runs)")


if __name__ == "__main__":
    main()
