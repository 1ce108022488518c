"""The device-timeline benchmark's reading of a profiler trace, and the stage ranges that
the extraction marks in a profile."""

import json

import pytest

from cdul.benchmarks.timeline import kind_of, settings, summarize


def _x(cat, name, ts, dur, **kw):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, **kw}


def test_summary_of_a_made_up_trace():
    events = [
        _x("user_annotation", "stage:load", 0, 100),
        _x("user_annotation", "stage:encode", 100, 10),
        _x("user_annotation", "stage:collect", 110, 190),
        _x("cpu_op", "aten::copy_", 5, 3),  # host ops are not device work
        _x("gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", 100, 50),
        _x("kernel", "_rows_kernel", 120, 10),
        _x("kernel", "sm90_xmma_gemm_f16f16", 130, 120),
        _x("kernel", "segment_scores_kernel", 250, 10),
        _x("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 260, 2),
        _x("kernel", "late_kernel", 400, 10),  # after the loop: not counted
    ]
    s = summarize(events)
    assert s["loop_ms"] == pytest.approx(0.3)
    assert s["busy_ms"] == pytest.approx(0.162)  # [100, 262) on either stream
    assert s["idle_ms"] == pytest.approx(0.138)
    assert s["batches"] == 1
    assert s["device_ms"] == pytest.approx(
        {"encoder": 0.12, "views": 0.01, "score": 0.01, "copy in": 0.05, "copy out": 0.002, "copy on device": 0.0}
    )
    assert s["copy_in_hidden_ms"] == pytest.approx(0.03)  # [120, 150) under the kernels
    assert s["idle_by_stage_ms"] == pytest.approx({"load": 0.1, "collect": 0.038})
    assert s["gaps"]["count"] == 2 and s["gaps"]["over_1ms"] == 0


def test_short_gaps_count_as_busy_and_gaps_outside_stages_are_between():
    events = [
        _x("user_annotation", "stage:encode", 0, 10),
        _x("user_annotation", "stage:score", 2000, 100),
        _x("kernel", "a", 0, 1000),
        _x("kernel", "b", 1010, 990),  # a 10 us gap: launch latency, not idle
    ]
    s = summarize(events)
    assert s["idle_ms"] == pytest.approx(0.1)  # [2000, 2100): the last stage, device idle
    assert s["gaps"]["count"] == 1
    assert s["idle_by_stage_ms"] == pytest.approx({"score": 0.1})
    s = summarize([*events[:2], _x("kernel", "a", 0, 500)])
    assert s["idle_by_stage_ms"] == pytest.approx({"between": 1.5, "score": 0.1})  # no stage in [500, 2000)


def test_kinds_and_a_trace_without_stages():
    assert kind_of({"cat": "kernel", "name": "_cols_kernel_0d1d"}) == "views"
    assert kind_of({"cat": "kernel", "name": "inv_norm_kernel"}) == "score"
    assert kind_of({"cat": "gpu_memcpy", "name": "Memcpy DtoD (Device -> Device)"}) == "copy on device"
    with pytest.raises(ValueError, match="no stage ranges"):
        summarize([_x("kernel", "a", 0, 1)])


def test_settings_change_the_plan_alone():
    from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
    from cdul.extractor.plan import plan_extraction

    plan = plan_extraction(WorkerConfig("s", "r", ExtractConfig("cdul-tiny-rn", "none")), ["cpu"])

    def current(p):
        r = p.worker.run
        return r.in_flight, r.worker_nice, r.copy_stream, r.blocking_wait

    assert current(settings(plan, "before")) == (2, 0, False, False)
    assert current(settings(plan, "now")) == current(plan) == (4, 5, True, True)
    assert RunOptions().in_flight == 4 and RunOptions().worker_nice == 5
    with pytest.raises(ValueError, match="unknown setting"):
        settings(plan, "later")


def test_a_profiled_extraction_marks_its_stages(tmp_path, monkeypatch):
    """A real run on the CPU under the profiler: one encode range per batch, and no device
    work (the CPU is not a device here)."""
    from torch.profiler import ProfilerActivity, profile

    from cdul.benchmarks.bench_data import jpeg_dataset
    from cdul.data import load_dataset
    from cdul.extractor.config import ExtractConfig, RunOptions, WorkerConfig
    from cdul.extractor.job import extract
    from cdul.extractor.plan import plan_extraction
    from cdul.extractor.tiling import Tiling

    monkeypatch.setenv("CDUL_BENCH_DIR", str(tmp_path))
    data = load_dataset("voc2012", jpeg_dataset(6, size=(40, 60)), "train")
    cfg = WorkerConfig(
        store=str(tmp_path / "s.zarr"),
        root=data.root,
        config=ExtractConfig(model="cdul-tiny-rn", pretrained="none", tiling=Tiling.grid(2)),
        run=RunOptions(batch_size=10, loader_workers=0),
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        counts = extract(plan_extraction(cfg, ["cpu"], chunk_len=4, overwrite=True), data).counts
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    s = summarize(json.loads(path.read_text())["traceEvents"])
    assert s["batches"] == counts["batches"] > 1
    assert s["busy_ms"] == 0 and s["idle_ms"] == pytest.approx(s["loop_ms"])
    assert {"load", "views", "encode", "score", "collect"} <= set(s["idle_by_stage_ms"])
