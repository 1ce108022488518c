"""The decision rules and the label tables: each rule against a per-row reference, each
format read back, the CSV read back by the folder reader, and no complete-looking file from
a table whose writing failed."""

from __future__ import annotations

import json
import os

import click
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cdul.cli.common import decision_options
from cdul.data.folder import load_folder
from cdul.labels import Decision, TableError, decide, open_table, partial_name

CLASSES = ["cat", "dog", "dining table"]


def reference(row, rule: Decision) -> set[int]:
    """The classes one row keeps, written out per class."""
    finite = [c for c, s in enumerate(row) if np.isfinite(s)]
    if rule.threshold is not None:
        return {c for c in finite if row[c] >= rule.threshold}
    if rule.top_k is not None:
        ranked = sorted(finite, key=lambda c: (-row[c], c))
        return set(ranked[: rule.top_k])
    top = max((row[c] for c in finite), default=0.0)
    return {c for c in finite if top > 0 and row[c] >= top / 2}


@pytest.mark.parametrize("rule", [Decision(), Decision(threshold=0.3), Decision(threshold=0.0), Decision(top_k=2)])
def test_rules_match_the_per_row_reference(rule):
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(5), size=200)
    scores[3] = [0.2, 0.2, 0.1, 0.1, 0.4]  # ties for top-k
    scores[4, 1] = np.nan
    scores[5] = 0.0
    kept = decide(scores, rule)
    assert kept.dtype == bool and kept.shape == scores.shape
    for i, row in enumerate(scores):
        assert set(np.flatnonzero(kept[i])) == reference(row, rule), (i, row)


def test_the_default_keeps_several_objects_a_fixed_half_would_not():
    two_objects = np.array([[0.46, 0.44, 0.10]])
    assert decide(two_objects).tolist() == [[True, True, False]]
    assert decide(two_objects, Decision(threshold=0.5)).tolist() == [[False, False, False]]
    assert decide(np.array([[0.9, 0.05, 0.05]])).tolist() == [[True, False, False]]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"threshold": 1.5}, "--threshold must be a number in [0, 1]"),
        ({"threshold": -0.1}, "--threshold must be"),
        ({"top_k": 0}, "--top-k must be a whole number >= 1"),
        ({"top_k": 2.5}, "--top-k must be"),
        ({"threshold": 0.2, "top_k": 2}, "not both"),
    ],
)
def test_bad_rules_are_one_line_value_errors(kwargs, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace("]", r"\]")) as info:
        Decision(**kwargs)
    assert "\n" not in str(info.value)


def _decision_command():
    @click.command()
    @decision_options
    def command(decision):
        click.echo(repr(decision))

    return command


@pytest.mark.parametrize(
    "args,code,needle",
    [
        ([], 0, "Decision(threshold=None, top_k=None)"),
        (["--threshold", "0.25"], 0, "Decision(threshold=0.25, top_k=None)"),
        (["--top-k", "3"], 0, "Decision(threshold=None, top_k=3)"),
        (["--top-k", "0"], 1, "Error: --top-k must be a whole number >= 1, not 0"),
        (["--threshold", "2"], 1, "Error: --threshold must be a number in [0, 1], not 2.0"),
        (["--threshold", "0.2", "--top-k", "1"], 1, "Error: give --threshold or --top-k, not both"),
    ],
)
def test_decision_options_hand_over_one_validated_rule(args, code, needle):
    result = CliRunner().invoke(_decision_command(), args)
    assert result.exit_code == code and result.output.strip() == needle, result.output


def _write(path, scores: bool, chunks=2, extra_columns=(), errors=None):
    rng = np.random.default_rng(1)
    ids = [f"a/img{i}.jpg" for i in range(7)]
    s = rng.dirichlet(np.ones(3), size=7).astype(np.float32)
    kept = decide(s)
    kept[2] = False  # a row without labels
    with open_table(str(path), CLASSES, scores=scores, extra_columns=extra_columns) as table:
        for part in np.array_split(np.arange(7), chunks):
            table.write(
                [ids[i] for i in part],
                kept[part],
                s[part] if scores else None,
                errors=None if errors is None else [errors[i] for i in part],
            )
    return ids, kept, s


def _names(kept_row) -> list[str]:
    return [CLASSES[j] for j in np.flatnonzero(kept_row)]


@pytest.mark.parametrize("scores", [False, True])
def test_the_csv_is_a_labels_csv_for_the_folder_reader(tmp_path, scores):
    ids, kept, s = _write(tmp_path / "labels.csv", scores)
    data = load_folder(str(tmp_path), classes=CLASSES)
    assert data.ids == ids
    np.testing.assert_array_equal(data.targets == 1, kept)
    header = (tmp_path / "labels.csv").read_text().splitlines()[0]
    assert header == "path,labels" + (",score:cat,score:dog,score:dining table" if scores else "")
    if scores:
        import csv

        rows = list(csv.reader(open(tmp_path / "labels.csv")))[1:]
        np.testing.assert_allclose(np.array([r[2:] for r in rows], dtype=float), s, rtol=1e-6)


def test_jsonl_and_parquet_hold_the_same_rows(tmp_path):
    ids, kept, s = _write(tmp_path / "l.jsonl", True, chunks=3, extra_columns=("error",), errors=[None] * 6 + ["bad"])
    rows = [json.loads(line) for line in open(tmp_path / "l.jsonl")]
    assert [r["path"] for r in rows] == ids and [r["labels"] for r in rows] == [_names(k) for k in kept]
    assert [r["error"] for r in rows] == [None] * 6 + ["bad"]
    np.testing.assert_allclose([[r["scores"][c] for c in CLASSES] for r in rows], s, rtol=1e-6)

    _write(tmp_path / "l.parquet", True, chunks=3)
    pf = pq.ParquetFile(tmp_path / "l.parquet")
    assert pf.metadata.num_row_groups == 3
    assert json.loads(pf.schema_arrow.metadata[b"cdul.classes"]) == CLASSES
    table = pf.read().to_pydict()
    assert table["path"] == ids and table["labels"] == [_names(k) for k in kept]
    np.testing.assert_array_equal(np.array([table["score:" + c] for c in CLASSES], dtype=np.float32).T, s)


def test_an_empty_parquet_table_is_valid(tmp_path):
    with open_table(str(tmp_path / "e.parquet"), CLASSES, scores=True):
        pass
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0


def test_a_failed_write_leaves_no_file_and_keeps_the_old_one(tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("path,labels\nold.jpg,cat\n")
    other = tmp_path / f".labels.csv.partial-{os.getpid() + 1}"  # not ours: left alone
    other.write_text("x")
    with pytest.raises(RuntimeError), open_table(str(out), CLASSES, scores=False) as table:
        table.write(["x.jpg"], np.array([[True, False, False]]))
        assert os.path.exists(partial_name(str(out))) and out.read_text().startswith("path,labels\nold")
        raise RuntimeError("stopped")
    assert out.read_text() == "path,labels\nold.jpg,cat\n"
    assert sorted(os.listdir(tmp_path)) == sorted([other.name, out.name])


@pytest.mark.parametrize(
    "name,needle",
    [
        ("labels.txt", "unknown table format '.txt'; use .csv, .jsonl, .parquet"),
        ("labels", "unknown table format '(no extension)'"),
        ("missing/labels.csv", "does not exist"),
    ],
)
def test_bad_destinations_are_one_line_errors(tmp_path, name, needle):
    match = needle.replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(TableError, match=match), open_table(str(tmp_path / name), CLASSES, scores=False):
        pass
    assert os.listdir(tmp_path) == []


def test_bad_writes_are_refused(tmp_path):
    with open_table(str(tmp_path / "t.csv"), CLASSES, scores=False) as table:
        with pytest.raises(ValueError, match="shape"):
            table.write(["a"], np.zeros((1, 2), bool))
        with pytest.raises(ValueError, match="scores must be given exactly"):
            table.write(["a"], np.zeros((1, 3), bool), np.zeros((1, 3)))
        with pytest.raises(ValueError, match="not named at opening"):
            table.write(["a"], np.zeros((1, 3), bool), errors=["x"])
    with (
        pytest.raises(TableError, match="separates a CSV's labels"),
        open_table(str(tmp_path / "u.csv"), ["a;b"], scores=False),
    ):
        pass


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_symbolic_link_is_never_written_through(tmp_path, suffix):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / f"theirs{suffix}"
    target.write_bytes(b"keep me")
    out = tmp_path / "out"
    out.mkdir()
    link = out / f"labels{suffix}"
    link.symlink_to(target)
    with pytest.raises(TableError, match="is a symbolic link"), open_table(str(link), CLASSES, scores=False):
        pass
    assert target.read_bytes() == b"keep me" and link.is_symlink() and os.listdir(out) == [link.name]
