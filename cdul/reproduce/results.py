"""``results.md`` of a benchmark run: the pseudo labels' mAP (S_g, S_ag, y0) from the store's
summary, the classifier's validation mAP per epoch (``run/metrics.jsonl``) and final
(``eval.json``, cdul-eval of ``best.pt``), beside what the authors of CDUL, CCD, TagCLIP
and PIAA report for that benchmark. A step not run yet shows "-".
"""

from __future__ import annotations

import contextlib
import json
import math
import os

from cdul.data.fs import atomic_write_text
from cdul.metrics import default_protocol

from .published import TITLES, published_rows
from .steps import Plan

PROTOCOL_TEXT = {
    "all-points": "all-points AP (area under the precision-recall curve)",
    "voc07-11pt": "the VOC 2007 devkit's 11-point AP",
}


def _num(value, spec: str = ".1f") -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return format(value, spec)


def _table(header: tuple, rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def read_inputs(plan: Plan) -> dict:
    """What the steps left: the store's summary, the run's epoch records, the evaluation."""
    out: dict = {"summary": None, "epochs": [], "eval": None}
    store = plan.path("train.zarr")
    if os.path.exists(os.path.join(store, "zarr.json")):
        from cdul.store import Store, StoreError

        with contextlib.suppress(StoreError):  # a store still being made: no summary yet
            out["summary"] = Store.open(store).attrs.get("summary")
    metrics = plan.path("run", "metrics.jsonl")
    if os.path.exists(metrics):
        with open(metrics, encoding="utf-8") as f:
            out["epochs"] = [json.loads(line) for line in f if line.strip()]
    if os.path.exists(plan.path("eval.json")):
        with open(plan.path("eval.json"), encoding="utf-8") as f:
            out["eval"] = json.load(f)
    return out


def pseudo_label_section(summary: dict | None) -> list[str]:
    m = (summary or {}).get("pseudo_label_map") or {}
    rows = [
        ("S_g, the global view", _num(m.get("global"))),
        ("S_ag, the aggregated snippets", _num(m.get("aggregated"))),
        ("y0, the initial pseudo labels", _num(m.get("y0"))),
    ]
    counts = ""
    if summary:
        read, total, failed = (summary.get(k, 0) for k in ("ok", "images", "failed"))
        counts = f"{read} of {total} training images read, {failed} failed"
    lines = ["## Pseudo labels on the training split", ""]
    if m:
        lines += [f"zeta {m.get('zeta')}, lambda {m.get('lam')}; {counts}.", ""]
    return lines + _table(("labels", "mAP"), rows)


def classifier_section(epochs: list[dict], evaluation: dict | None) -> list[str]:
    rows = [(r["epoch"], _num(r.get("loss"), ".4f"), _num(r.get("pseudo_map")), _num(r.get("val_map"))) for r in epochs]
    lines = ["## The classifier", "", *_table(("epoch", "loss", "pseudo-label mAP", "test-split mAP"), rows)]
    if evaluation:
        lines += [
            "",
            f"Final: **{_num(evaluation.get('map'))}** mAP, `best.pt` (epoch {evaluation.get('epoch')}) scored by "
            f"cdul-eval on {evaluation.get('images')} images ({evaluation.get('unreadable', 0)} unreadable).",
        ]
    return lines


def render(plan: Plan, inputs: dict) -> str:
    train_split, test_split = plan.splits
    evaluation = inputs["eval"]
    protocol = (evaluation or {}).get("ap_protocol") or default_protocol(plan.dataset)
    title = TITLES[plan.dataset]
    lines = [
        f"# CDUL on {title}",
        "",
        f"Data `{plan.root}` ({plan.dataset}): pseudo labels and training on the `{train_split}` split, "
        f"scores on the `{test_split}` split. mAP in percent, {PROTOCOL_TEXT[protocol]}, difficult labels left out.",
    ]
    if plan.smoke:
        lines += ["", "**Smoke run: tiny models with random weights. These numbers say nothing about accuracy.**"]
    lines += ["", *pseudo_label_section(inputs["summary"]), "", *classifier_section(inputs["epochs"], evaluation)]
    ours = _num((evaluation or {}).get("map"))
    rows = [("cdul, this run", ours, "the settings of `done/*.json`", "measured here")]
    rows += [
        (f"{name} (reported by its authors)", value, setting, source)
        for name, value, setting, source in published_rows(plan.dataset)
    ]
    lines += ["", f"## Beside the published numbers ({title})", ""]
    lines += _table(("method", "mAP", "setting", "source"), rows)
    lines += ["", '"-": not reported, or not checked against the paper here.', ""]
    return "\n".join(lines)


def write_results(plan: Plan) -> str:
    path = plan.path("results.md")
    os.makedirs(plan.out, exist_ok=True)
    atomic_write_text(path, render(plan, read_inputs(plan)))
    return path
