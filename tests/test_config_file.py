"""--config FILE (YAML or JSON) for cdul-train and cdul-extract: keys are option names with
dashes or underscores, the command line wins, unknown keys are named in one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import cdul.trainer
from cdul.cli.extract import main as extract
from cdul.cli.train import main as train


@pytest.fixture
def trained(monkeypatch):
    """cdul-train's TrainConfig, captured instead of training."""
    seen = []

    def fake(cfg, log=None, on_start=None):
        seen.append(cfg)
        return {"epochs": cfg.epochs, "label_round": 0, "best_map": None, "best_epoch": None, "out_dir": cfg.out_dir}

    monkeypatch.setattr(cdul.trainer, "train", fake)
    return seen


def test_yaml_keys_with_dashes_or_underscores_and_the_command_line_wins(trained, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("store: s.zarr\nout-dir: runs/x\nimg_size: 224\nepochs: 7\nloss: bce\naugment: true\n")
    result = CliRunner().invoke(train, ["--config", str(config), "--epochs", "3", "-q"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    cfg = trained[-1]
    assert (cfg.store, cfg.out_dir, cfg.img_size, cfg.loss, cfg.augment) == ("s.zarr", "runs/x", 224, "bce", True)
    assert cfg.epochs == 3  # the command line wins
    assert cfg.lr == 1e-5  # not in the file: the default


def test_json(trained, tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"--store": "s.zarr", "out_dir": "runs/y", "lr": 0.001}))
    result = CliRunner().invoke(train, ["--config", str(config), "-q"])
    assert result.exit_code == 0, result.output
    assert (trained[-1].store, trained[-1].out_dir, trained[-1].lr) == ("s.zarr", "runs/y", 0.001)


@pytest.mark.parametrize(
    "text,message",
    [
        ("store: s.zarr\nepoch: 3\nimgsize: 2\n", "unknown options epoch, imgsize (see main --help)"),
        ("- a\n- b\n", "expected a mapping of option names to values, found list"),
        ("store: [unclosed\n", "while parsing a flow sequence"),
    ],
)
def test_bad_files_are_one_line(trained, tmp_path, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    result = CliRunner().invoke(train, ["--config", str(config), "--out-dir", "r"])
    assert result.exit_code == 1 and not trained
    assert result.output.strip() == f"Error: --config {config}: {message}"


def test_extract_takes_its_argument_and_options_from_the_file(tmp_path):
    config = tmp_path / "extract.yaml"
    missing = tmp_path / "no-such-dataset"
    config.write_text(f"dataset-root: {missing}\nout: {tmp_path / 'x.zarr'}\ndataset: voc2012\n")
    result = CliRunner().invoke(extract, ["--config", str(config)])
    assert result.exit_code != 0 and str(missing) in result.output
    assert "Missing argument" not in result.output and "Traceback" not in result.output
