"""The steps of a benchmark run, their commands, and the done markers that make a rerun skip
what is finished.

Every step is one cdul command run as a subprocess (its progress bar on the terminal). When it
exits 0 its marker ``<out>/done/<step>.json`` is written (atomically) with the exact command;
a rerun skips a step whose marker holds the same command, runs again one without a marker
(cdul-extract resumes its finished chunks, cdul-train runs with ``--resume`` from
``last.pt``), and refuses one whose marker holds another command (other settings in the same
folder would mix two runs).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from cdul.cli.common import option_args
from cdul.data.fs import atomic_write_text

# the splits the paper trains on (pseudo labels of the training images) and scores on
SPLITS = {
    "voc2012": ("train", "val"),
    "voc2007": ("trainval", "test"),
    "coco2014": ("train", "val"),
    "nuswide": ("train", "test"),
}

# The paper's settings where it gives them; where it does not (marked), cdul's defaults.
EXTRACT = {
    "model": "RN50x64",  # CLIP RN50x64, whose input is 448 px
    "pretrained": "openai",
    "snippet": 3,  # 3 x 3 snippets
    "zeta": 0.5,  # cdul's default
    "lam": 0.0,  # cdul's default
}
TRAIN = {
    "arch": "resnet101",
    "weights": "imagenet",
    "img_size": 448,
    "loss": "kl",
    "label_lr": 1.0,
    "psi_mu": 0.5,
    "psi_sigma": 1.0,
    "update_every": 1,
    "optimizer": "adam",  # this and what follows: not in the paper, cdul's defaults
    "lr": "1e-5",
    "batch_size": 8,
    "epochs": 20,
    "schedule": "cosine",
    "amp": "bf16",
}
EVAL: dict = {"amp": "bf16"}

# --smoke: the same steps on the CPU with tiny random-weight models, for plumbing only
SMOKE_EXTRACT = {"model": "cdul-tiny-rn", "pretrained": "none", "gpus": "cpu"}
SMOKE_TRAIN = {"arch": "resnet18", "weights": "none", "img_size": 32, "epochs": 1, "batch_size": 4}
SMOKE_TRAIN |= {"lr": "1e-3", "device": "cpu", "workers": 0, "amp": "none"}
SMOKE_EVAL = {"device": "cpu", "workers": 0, "amp": "none"}


class StepError(Exception):
    """A step that failed or cannot run; the message is one line."""


@dataclass
class Plan:
    """Where a benchmark's run reads and writes, and how each command is called."""

    dataset: str
    root: str
    out: str
    smoke: bool = False
    extra: dict[str, list[str]] = field(default_factory=dict)  # step -> extra arguments

    @property
    def splits(self) -> tuple[str, str]:
        return SPLITS[self.dataset]

    def path(self, *names: str) -> str:
        return os.path.join(self.out, *names)

    def extract_options(self) -> dict:
        options = {**EXTRACT, **(SMOKE_EXTRACT if self.smoke else {})}
        if self.dataset == "nuswide":
            options["max_failures"] = "100%"  # downloads lack images; they are counted in results.md
        return options

    def train_options(self) -> dict:
        return {**TRAIN, **(SMOKE_TRAIN if self.smoke else {})}

    def commands(self) -> dict[str, list[str]]:
        """step -> the cdul command (name and arguments) it runs."""
        train_split, test_split = self.splits
        store, run = self.path("train.zarr"), self.path("run")
        extract = [self.root, "--dataset", self.dataset, "--split", train_split, "--out", store]
        train = ["--store", store, "--out-dir", run, "--val-data", self.root]
        train += ["--val-dataset", self.dataset, "--val-split", test_split]
        evaluate = ["--checkpoint", os.path.join(run, "best.pt"), "--data", self.root, "--dataset", self.dataset]
        evaluate += ["--split", test_split, "--out", self.path("eval.json")]
        eval_options = {**EVAL, **(SMOKE_EVAL if self.smoke else {})}
        return {
            "extract": [
                "cdul-extract",
                *extract,
                *option_args(self.extract_options()),
                *self.extra.get("extract", []),
            ],
            "train": ["cdul-train", *train, *option_args(self.train_options()), *self.extra.get("train", [])],
            "eval": ["cdul-eval", *evaluate, *option_args(eval_options), *self.extra.get("eval", [])],
        }


def tool(name: str) -> str:
    """The command ``name`` of this installation: beside this Python (a virtual environment's
    bin/), else on the PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.access(here, os.X_OK) else shutil.which(name)
    if not found:
        raise StepError(f"{name} is not installed beside {sys.executable} nor on the PATH; install cdul first")
    return found


def marker(plan: Plan, step: str) -> str:
    return plan.path("done", f"{step}.json")


def is_done(plan: Plan, step: str, command: list[str]) -> bool:
    """Whether the step finished with this command; StepError if it finished with another."""
    path = marker(plan, step)
    if not os.path.exists(path):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            done = json.load(f)["command"]
    except (OSError, ValueError, KeyError, TypeError):
        raise StepError(f"{path}: not a done marker of this script; delete it to run the {step} step again") from None
    if done != command:
        raise StepError(
            f"{plan.out}: its {step} step ran with other settings ({path}); choose another --out, or delete "
            "that folder to start over"
        )
    return True


def run_step(plan: Plan, step: str, command: list[str], log=print) -> bool:
    """Run ``command`` unless its marker says it is done; -> whether it ran."""
    if is_done(plan, step, command):
        log(f"[{step}] done before, skipped ({marker(plan, step)})")
        return False
    argv = [tool(command[0]), *command[1:]]
    if step == "train":
        argv.append("--resume")  # continues from last.pt when there is one, else starts the run
    log(f"[{step}] {shlex.join(argv)}")
    code = subprocess.call(argv)
    if code != 0:
        raise StepError(f"the {step} step failed (exit status {code}); rerun this script to resume it once fixed")
    os.makedirs(os.path.dirname(marker(plan, step)), exist_ok=True)
    atomic_write_text(marker(plan, step), json.dumps({"command": command}, indent=1) + "\n")
    return True
