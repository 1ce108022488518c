"""cdul-extract's defaults are its records' (``ExtractConfig``, ``RunOptions``, ``ExtractPlan``):
an option left out gives exactly the record a caller of ``cdul.extractor`` gets by default."""

from __future__ import annotations

import dataclasses

from cdul.cli.extract import extract_config, main, run_options
from cdul.extractor.clip_model import class_prompts
from cdul.extractor.config import ExtractConfig, RunOptions
from cdul.extractor.options import PROMPT_TEMPLATE
from cdul.extractor.plan import ExtractPlan


def _defaults() -> dict:
    """The options as cdul-extract parses a command line that gives none of them."""
    with main.make_context("cdul-extract", ["root", "--out", "s.zarr"]) as ctx:
        return dict(ctx.params)


def test_options_left_out_give_the_default_records():
    options = {**_defaults(), "model": "RN50", "pretrained": "openai"}
    assert extract_config(options) == ExtractConfig(model="RN50", pretrained="openai")
    assert run_options(options, options["batch_size"]) == RunOptions()
    plan = {f.name: f.default for f in dataclasses.fields(ExtractPlan)}
    for name in ("chunk_len", "zeta", "lam", "ap", "overwrite"):
        assert options[name] == plan[name], name


def test_one_default_prompt():
    assert ExtractConfig("m", "p").template == PROMPT_TEMPLATE == _defaults()["template"]
    assert class_prompts(["cat"]) == [[PROMPT_TEMPLATE.format("cat")]]
