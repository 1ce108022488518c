"""Gradient-alignment training (docs/algorithm.md §3): the classifier learns from the pseudo labels
streamed out of the store while the labels move towards what it predicts.

An epoch (:meth:`Trainer.train_one_epoch`) runs :class:`~.step.Step` on each batch: the
network step, then, in update epochs, the label step on the same logits. The new labels go
back to the stream, which writes each chunk to round k + 1 when all its rows are back; the
round becomes visible (``finish_round``) once every rank is done. Steps whose loss or
gradient is not finite are skipped and counted; an epoch that skips more than half its steps
stops the run (it diverged), and so does a model that is not finite. Ranks may have different
batch counts (they own whole chunks); DDP's ``join`` lets the ones that finish early shadow
the others' all-reduces.

Between epochs (:meth:`Trainer.end_epoch`), rank 0 alone writes the metrics, then
``last.pt`` (and ``best.pt``). Which round a run starts from, and which rounds it drops
first so that a resumed run retraces the uninterrupted one, is in :mod:`.rounds`.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cdul.data.transfer import handed_over
from cdul.limits import bounded
from cdul.metrics import default_protocol
from cdul.store import Store, StoreLock, StoreLockedError, layout

from . import checkpoint as ckpt_io
from .config import DEFAULT_IMG_SIZE, TrainConfig
from .distributed import Dist
from .epoch_scores import epoch_line, val_scores
from .evaluate import pseudo_label_map
from .images import IMAGENET_MEAN, IMAGENET_STD, EpochBatches, ImageSet, collate
from .model import WeightsError, build_classifier, unwrap
from .rounds import begin_round, drop_newer_rounds, starting_round
from .runlog import RunLog
from .start import (
    TrainError,
    check_finite,
    check_round,
    dataset_attr,
    largest_side,
    load_val,
    make_optimizer,
    make_scheduler,
    open_store,
    out_paths,
    resume_state,
)
from .step import STATS, Step, check_diverged
from .stream import LabelStream, chunk_order, scan_round


class Trainer:
    loader: torch.utils.data.DataLoader | None  # from setup() until the end of fit()
    runlog: RunLog | None  # rank 0's

    def __init__(self, cfg: TrainConfig, env: Dist, log=None, on_start=None):
        self.cfg, self.env = cfg, env
        self.on_start = on_start if env.main else None
        self.log = log if (log is not None and env.main) else (lambda *_: None)
        self.store = open_store(cfg.store)
        self.classes = list(self.store.classes)
        root = cfg.data or dataset_attr(self.store, "root")
        if not root:
            raise TrainError(f"{cfg.store} does not say where its images are; pass --data ROOT")
        self.root = root
        # an input size past the largest image (and the default) only allocates: clamped to it
        most = max(DEFAULT_IMG_SIZE, largest_side(self.store))
        cfg.img_size = bounded(cfg.img_size, most, "--img-size", "pixels of the largest image side", self.note)
        self.val = load_val(cfg, self.store)
        # the pseudo labels' mAP: under --ap, else the protocol of the training set's kind
        self.protocol = cfg.ap or default_protocol(dataset_attr(self.store, "kind"))
        paths = out_paths(cfg)
        self.last_path, self.best_path = paths["last.pt"], paths["best.pt"]
        self.device = env.device
        self.stopped_early = False

    def note(self, message: str) -> None:
        self.log(f"note: {message}")

    # -- the run -----------------------------------------------------------------------------
    def fit(self) -> dict:
        lock, refusal = StoreLock(self.cfg.store) if self.env.main else None, None
        if lock is not None:
            try:
                lock.acquire()
            except StoreLockedError as exc:
                lock, refusal = None, str(exc)
        refusal = self.env.broadcast(refusal)  # the other ranks would wait for rank 0 at its first barrier
        if refusal is not None:
            raise TrainError(refusal if self.env.main else f"rank 0 could not lock the store: {refusal}")
        try:
            if lock is not None:  # what the store holds now, under the lock (rounds written meanwhile)
                self.store = Store.open(self.cfg.store, mode="r+")
            self.setup()
            for epoch in range(self.epoch + 1, self.cfg.epochs + 1):
                record = self.train_one_epoch(epoch)
                record.update(self.evaluate())
                if self.end_epoch(epoch, record):
                    break
            return self.summary()
        finally:
            self.loader = None  # stops the persistent workers now, not at garbage collection
            runlog = getattr(self, "runlog", None)  # absent where setup() stopped early
            if runlog is not None:
                runlog.close()
            if lock is not None:
                lock.release()

    def setup(self) -> None:
        cfg, env, store = self.cfg, self.env, self.store
        saved = resume_state(cfg, store, self.last_path, self.log, main=env.main)
        self.round = starting_round(cfg, store, saved, self.log)
        drop_newer_rounds(cfg, store, env, self.round, self.log)
        model, how = self._build_model(saved)
        self._make_optimisation(model, saved)
        self.epoch = saved["epoch"] if saved else 0
        self.model = model
        if env.active:
            ids = [self.device] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(model, device_ids=ids)
        scan = scan_round(store, self.round)
        check_round(scan, f"{cfg.store} {layout.round_name(self.round)}", self.log)
        self.rows = scan.rows
        self.batches = EpochBatches()
        self.loader = self._make_loader()
        self.step = Step(cfg, self.model, self.opt, self.scaler, self.device)
        keep = self.epoch if saved else None
        self.runlog = RunLog(cfg.out_dir, keep_until=keep, report_to=cfg.report_to) if env.main else None
        self._start_history(saved)
        if cfg.early_stop and env.main and self.history["pseudo_map"].get(0) is None:
            self.log("warning: --early-stop needs ground truth in the store (targets); it will not stop the run")
        self.log(
            f"{how}; {int(self.rows.sum())} of {store.n} images usable; labels from round {self.round}; "
            f"{self.device} x {env.world}" + (f"; resuming after epoch {self.epoch}" if saved else "")
        )
        if self.on_start is not None:
            self.on_start()
        if saved:
            ckpt_io.set_rng_state(saved["rng"])  # last: nothing above draws from the restored generators

    def _build_model(self, saved: dict | None) -> tuple[torch.nn.Module, str]:
        """The classifier, seeded, on the device (a resumed run's weights come from its
        checkpoint later); and how it was initialised, in words."""
        cfg, env = self.cfg, self.env
        torch.manual_seed(cfg.seed)
        if not env.main:
            env.barrier()  # rank 0 fills the weights cache first
        try:
            model, how = build_classifier(cfg.arch, len(self.classes), "none" if saved else cfg.weights)
        except WeightsError as exc:
            raise TrainError(str(exc)) from None
        if env.main:
            env.barrier()
        model.to(self.device)
        if self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # one input size: pick the fastest kernels once
        return model, how

    def _make_optimisation(self, model: torch.nn.Module, saved: dict | None) -> None:
        """Optimiser, schedule and gradient scaler; a resumed run restores them and the model."""
        cfg = self.cfg
        self.opt = make_optimizer(cfg, model, self.device)
        self.sched = make_scheduler(cfg, self.opt)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda" and cfg.amp == "fp16")
        if not saved:
            return
        parts = [(model, "model"), (self.opt, "optimizer"), (self.sched, "scheduler")]
        for target, name in parts + ([(self.scaler, "scaler")] if saved.get("scaler") else []):
            try:
                ckpt_io.restore(target, saved.get(name), self.last_path, name)
            except ckpt_io.CheckpointError as exc:
                raise TrainError(str(exc)) from None

    def _make_loader(self) -> torch.utils.data.DataLoader:
        """Images of the batches ``self.batches`` hands out, decoded by ``cfg.workers`` processes."""
        cfg = self.cfg
        return torch.utils.data.DataLoader(
            ImageSet(
                self.root,
                cfg.img_size,
                kind=dataset_attr(self.store, "kind", "folder"),
                augment=cfg.augment,
                seed=cfg.seed,
            ),
            batch_sampler=self.batches,
            num_workers=cfg.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=cfg.workers > 0,
            generator=torch.Generator().manual_seed(cfg.seed),
        )  # worker seeds: not from the global RNG

    def _start_history(self, saved: dict | None) -> None:
        """The run's history: a resumed run's from its checkpoint; a new run's starts with the
        pseudo-label mAP of rounds 0 and the starting one, logged as epoch 0 (rank 0)."""
        cfg = self.cfg
        if saved:
            self.history = saved["history"]
            return
        self.history = {"pseudo_map": {}, "bad_rounds": 0, "best_map": None, "best_epoch": None}
        if not self.env.main:
            return
        for r in sorted({0, self.round}):
            self.history["pseudo_map"][r] = pseudo_label_map(
                self.store, r, difficult=cfg.difficult, protocol=self.protocol
            )
        assert self.runlog is not None  # rank 0 has one
        self.runlog.append(
            {
                "epoch": 0,
                "label_round": self.round,
                "weights": cfg.weights,
                "pseudo_map": self.history["pseudo_map"][self.round],
            }
        )

    # -- one epoch ---------------------------------------------------------------------------
    def train_one_epoch(self, epoch: int) -> dict:
        cfg, env = self.cfg, self.env
        update = cfg.is_update_epoch(epoch)
        new_round, out = begin_round(cfg, env, self.store, self.round, epoch) if update else (None, None)
        chunks = chunk_order(self.store.n_chunks, cfg.seed, epoch, env.rank, env.world)
        stream = LabelStream(
            self.store, self.round, chunks, seed=cfg.seed, epoch=epoch, batch_size=cfg.batch_size, out=out
        )
        self.batches.stream, self.batches.epoch = stream, epoch
        bar = tqdm(
            total=int(self.rows[chunks].sum()),
            unit="img",
            desc=f"epoch {epoch}/{cfg.epochs}",
            disable=cfg.quiet or not env.main,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        lr = self.opt.param_groups[0]["lr"]
        sums = np.zeros(len(STATS))
        self.model.train()
        started = time.time()
        joined = self.model.join() if isinstance(self.model, DistributedDataParallel) else contextlib.nullcontext()
        assert self.loader is not None  # made by setup()
        with joined:
            for images, index, ok in handed_over(self.loader, "batches of images"):
                idx = index.numpy()
                y_host = stream.labels(idx)
                new, stats = self.step(images, torch.from_numpy(y_host), ok, update)
                stream.commit(idx, new)
                sums += stats
                bar.update(len(idx))
                if sums[1]:
                    bar.set_postfix(loss=f"{sums[0] / sums[1]:.4f}", skipped=int(sums[4]), refresh=False)
        stream.close()
        bar.close()
        seconds = time.time() - started
        loss_sum, n_loss, n_img, steps, skipped, unreadable, change = env.sum(sums.tolist())
        check_finite(unwrap(self.model), f"the model after epoch {epoch}")
        check_diverged(epoch, steps, skipped)
        if not n_img:  # nothing was trained on: no round, no checkpoint, no "done"
            raise TrainError(
                f"epoch {epoch}: not one of its {int(unreadable)} images could be read under {self.root}; "
                "check --data (the folder the store's images are in)"
            )
        env.barrier()  # every rank's chunks are in the store
        self.sched.step()
        record = {
            "epoch": epoch,
            "lr": lr,
            "loss": loss_sum / n_loss if n_loss else float("nan"),
            "images": int(n_img),
            "seconds": round(seconds, 3),
            "images_per_s": round(n_img / max(seconds, 1e-9), 2),
            "steps": int(steps),
            "skipped_steps": int(skipped),
            "unreadable": int(unreadable),
            "label_round": self.round,
            "label_round_written": new_round,
            "peak_label_chunks": stream.peak_live,
        }
        if update:
            record["label_change"] = change / max(n_loss * len(self.classes), 1)
            assert new_round is not None  # begun above in an update epoch
            self._finish_round(new_round)
        record["pseudo_map"] = self.history["pseudo_map"].get(self.round)
        return record

    def _finish_round(self, new_round: int) -> None:
        if self.env.main:
            pmap = pseudo_label_map(self.store, new_round, difficult=self.cfg.difficult, protocol=self.protocol)
            self.history["pseudo_map"][new_round] = pmap
            self.store.round_array(new_round).attrs.update({"pseudo_map": pmap, "difficult": self.cfg.difficult})
            self.store.finish_round(new_round)  # last: its attributes are in the consolidated metadata
        self.round = new_round
        self.env.barrier()  # the round is complete before anyone reads it

    # -- evaluation and the end of an epoch ----------------------------------------------------
    def evaluate(self) -> dict:
        if self.val is None:
            return {}
        return val_scores(unwrap(self.model), self.val, self.classes, self.cfg, self.env, self.device)

    def end_epoch(self, epoch: int, record: dict) -> bool:
        """Metrics, then checkpoints (rank 0); -> whether to stop early (on every rank)."""
        stop = False
        if self.env.main:
            stop = self._early_stop(record)
            val = record.get("val_map")
            best = (
                val is not None
                and math.isfinite(val)
                and (self.history["best_map"] is None or val > self.history["best_map"])
            )
            if best:
                self.history.update(best_map=val, best_epoch=epoch)
            record["best"] = best
            assert self.runlog is not None  # rank 0 has one
            self.runlog.append(record)
            state = self.state(epoch)
            ckpt_io.save_checkpoint(state, self.last_path)
            if best:
                ckpt_io.save_checkpoint(state, self.best_path)
            self.log(epoch_line(record))
        stop = bool(self.env.broadcast(stop))
        self.stopped_early = stop
        self.epoch = epoch
        return stop

    def _early_stop(self, record: dict) -> bool:
        if record.get("label_round_written") is None:
            return False
        base, now = self.history["pseudo_map"].get(0), record.get("pseudo_map")
        if base is None or now is None:
            return False
        self.history["bad_rounds"] = self.history["bad_rounds"] + 1 if now < base else 0
        record["rounds_below_initial"] = self.history["bad_rounds"]
        if self.cfg.early_stop and self.history["bad_rounds"] >= 3:
            self.log(f"early stop: pseudo-label mAP below round 0's ({base:.2f}) for 3 rounds in a row")
            return True
        return False

    def state(self, epoch: int) -> dict:
        return {
            "epoch": epoch,
            "label_round": self.round,
            "model": unwrap(self.model).state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": ckpt_io.rng_state(),
            "config": self.cfg.as_dict(),
            "classes": self.classes,
            "arch": self.cfg.arch,
            "img_size": self.cfg.img_size,
            "loss": self.cfg.loss,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "history": self.history,
            "store_n": self.store.n,
            "dataset": dataset_attr(self.store, "kind"),
            "clip": dict(self.store.section("model")),  # the CLIP that made the labels (cdul-eval warns on random)
        }

    def summary(self) -> dict:
        return {
            "epochs": self.epoch,
            "label_round": self.round,
            "best_map": self.history.get("best_map"),
            "best_epoch": self.history.get("best_epoch"),
            "stopped_early": self.stopped_early,
            "out_dir": self.cfg.out_dir,
        }
