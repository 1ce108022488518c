"""The benchmark's FLOP count and device peaks (benchmarks/devices.py)."""

from __future__ import annotations

import pytest
import torch

from cdul.benchmarks.devices import peak_tflops, share_of_peak, tower_flops


def test_flops_of_a_tiny_tower_match_a_hand_count():
    torch.manual_seed(0)
    tower = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False),  # 4*8*8 outputs, 3*3*3 multiply-adds each
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 5, bias=False),  # 5 outputs, 256 multiply-adds each
    )
    assert tower_flops(tower, 8) == 2 * (4 * 8 * 8 * 27 + 5 * 256)


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA GeForce RTX 4090", 165.0),
        ("NVIDIA L40S", None),  # not an L4
        ("NVIDIA H100 PCIe", None),  # another peak, no entry
        ("CPU Intel(R) Xeon(R) x2", None),
    ],
)
def test_peak_by_device_name(name, peak):
    assert peak_tflops(name) == peak


def test_share_of_peak():
    assert share_of_peak(500.0, 989 * 10**9, "NVIDIA H200") == pytest.approx(0.5)
    assert share_of_peak(1000.0, 10**9, "CPU x86_64 x2") is None


def test_dense_attention_bench_records_both_forms_and_their_agreement(tmp_path, monkeypatch, capsys):
    import csv

    from cdul.benchmarks import dense_attn_bench

    out = tmp_path / "r.csv"
    monkeypatch.setenv("CDUL_BENCH_CSV", str(out))
    dense_attn_bench.main(["--quick", "--repeat", "1"])
    rows = list(csv.DictReader(out.open()))
    diffs = [float(r["value"]) for r in rows if r["metric"] == "max_abs_diff"]
    assert {r["variant"] for r in rows} == {"explicit", "fused", "ratio"}
    assert len(diffs) == 2 and max(diffs) < 1e-5
    assert "explicit/fused" in capsys.readouterr().out


def test_half_tower_keeps_its_activations_in_half_precision_under_autocast():
    """The half-weights row's tower: weights in bf16, autocast off inside (on CUDA autocast
    would run its layer norms in float32), output near the float32 tower's."""
    import copy

    from cdul.benchmarks.tower_limits import HalfTower

    torch.manual_seed(0)
    tower = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 8))
    x = torch.randn(4, 16)
    half = HalfTower(copy.deepcopy(tower).to(torch.bfloat16))
    seen = []
    half.visual[1].register_forward_hook(lambda m, i, o: seen.append((o.dtype, torch.is_autocast_enabled("cpu"))))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = half(x.to(torch.bfloat16))
    assert seen == [(torch.bfloat16, False)] and got.dtype == torch.bfloat16
    assert (got.float() - tower(x)).abs().max().item() < 0.1
