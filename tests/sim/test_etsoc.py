"""The ET-SoC target on hand-worked cases: one shire and one GEMM (cycles and energy), double
buffering, DRAM-channel contention between shires, DVFS; ET-SoC-1 decode end to end."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.errors import SimError
from sim.config import CONFIGS_DIR, Hardware
from sim.energy import load_energy
from sim.targets import build
from sim.targets.base import OpArrays
from sim.targets.etsoc import ETSoC, ETSoCParams, shire_hops
from sim.targets.parts import Precision

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20


def chip(**kw) -> ETSoC:
    """One shire of 32 minions at 1 GHz, fp16 at 32 FLOP (16 MACs) per minion-cycle, efficiency 1,
    one DRAM channel of 1 GB/s, a 4 MB scratchpad (2 MB chunks), no fixed costs."""
    base = dict(shires=1, minions_per_shire=32, freq_hz=1e9, dvfs=[[1e9, 0.5]], v_ref=0.5, v_min=0.3, v_max=0.7,
                static_exponent=1.0,
                tensor_ops_per_cycle={"int8": 128.0, "fp16": 32.0, "fp32": 16.0},
                mm_efficiency={"int8": 1.0, "fp16": 1.0, "fp32": 1.0}, vector_ops_per_cycle=8.0, l1_bytes=4096,
                scratchpad_bytes=4 * MB, l3_bytes=32 * MB, dram_bytes_per_s=1e9, dram_channels=1,
                noc_bytes_per_s=1e12, hop_latency_s=0.0, mesh_columns=1, op_overhead_s=0.0, node_nm=7)
    base.update(kw)
    return ETSoC(ETSoCParams(**base))


def gemm(m, n, k) -> OpArrays:
    df = pd.DataFrame([dict(kind="gemm", storage_bytes=2.0, flops=2 * m * n * k,
                            bytes_read=2 * (m * k + n * k), bytes_written=2 * m * n, weight_bytes=2 * n * k,
                            kv_bytes_read=0, kv_bytes_written=0, gemm_m=m, gemm_n=n, gemm_k=k, gemm_batch=1)])
    return OpArrays(kind=df.kind.to_numpy(dtype=object), storage_bytes=df.storage_bytes.to_numpy(float),
                    **{c: df[c].to_numpy(np.int64) for c in ("flops", "bytes_read", "bytes_written", "weight_bytes",
                                                             "kv_bytes_read", "kv_bytes_written", "gemm_m", "gemm_n",
                                                             "gemm_k", "gemm_batch")})


def test_one_shire_one_gemm_by_hand():
    c = chip().cost(gemm(1, 1024, 1024), Precision(16, 16))
    load = 2 * MB / 1e9  # the 2 MB fp16 weight slice, one chunk, over the 1 GB/s channel
    compute = 1024 * 1024 / (32 * 16 * 1e9)  # 1M MACs at 512 GMAC/s
    assert c.compute_cycles[0] == pytest.approx((load + compute) * 1e9, abs=1)
    assert c.actions["compute.mac_fp16"][0] == 1024 * 1024
    # the weight's bytes pay dram.byte alone (measured over the whole path to the minions); the mesh,
    # L3 and L1 count the activations: A (2 KB) to the one shire, its C back
    assert c.actions["dram.byte"][0] == 2 * MB and "l2.byte" not in c.actions
    assert c.actions["l1.byte"][0] == 1024 * 2 and c.actions["l3.byte"][0] == 1024 * 2 + 1024 * 2
    assert c.actions["network.byte_hop"][0] == pytest.approx(1024 * 2 * float(shire_hops(chip().params).mean()))
    assert c.actions["minion_rail.second"][0] == c.actions["board.second"][0] == pytest.approx(load + compute,
                                                                                               rel=1e-6)
    t = load_energy(ROOT / "configs" / "energy" / "etsoc1.yaml")
    e = t.apply(c.actions, np.array([load + compute]))
    assert e["compute"][0] == pytest.approx(1024 * 1024 * 2.70)  # pJ, the measured fp16 MAC
    assert e["dram"][0] == pytest.approx(2 * MB * 114.6)


def test_chunks_are_double_buffered():
    # a 2 MB scratchpad takes 1 MB chunks: load, load while computing the first, compute the second
    c = chip(scratchpad_bytes=2 * MB).cost(gemm(64, 1024, 1024), Precision(16, 16))
    load = MB / 1e9
    compute_chunk = 64 * 1024 * 1024 / 2 / (32 * 16 * 1e9)
    assert c.compute_cycles[0] == pytest.approx((2 * load + compute_chunk) * 1e9, abs=2)


def test_shires_contend_for_dram_channels():
    one = chip(shires=2, dram_channels=1).cost(gemm(1, 1024, 1024), Precision(16, 16))
    two = chip(shires=2, dram_channels=2, dram_bytes_per_s=2e9).cost(gemm(1, 1024, 1024), Precision(16, 16))
    # each shire streams 1 MB: queued on one 1 GB/s channel they take 2 ms; on two they overlap
    assert one.compute_cycles[0] == pytest.approx(2 * MB / 1e9 * 1e9 + 1024 * 512 / (512e9) * 1e9, abs=2)
    assert two.compute_cycles[0] == pytest.approx(one.compute_cycles[0] / 2, rel=0.01)


def test_dvfs_scales_voltage_and_energy():
    p = dict(dvfs=[[6e8, 0.517], [8e8, 0.618]], v_ref=0.517, static_exponent=1.23)
    assert chip(freq_hz=7e8, **p).params.voltage == pytest.approx((0.517 + 0.618) / 2)
    assert chip(freq_hz=5e8, **p).params.voltage == pytest.approx(0.517 - 0.0505)  # extrapolated
    assert chip(freq_hz=2e8, v_min=0.4, **p).params.voltage == 0.4  # held at the rail's floor
    with pytest.raises(SimError, match="above the rail's 0.7 V limit"):
        chip(freq_hz=1.2e9, **p).params.voltage
    lo, hi = chip(freq_hz=6e8, **p), chip(freq_hz=8e8, **p)
    a, b = lo.cost(gemm(1, 256, 256), Precision(16, 16)), hi.cost(gemm(1, 256, 256), Precision(16, 16))
    # the minion rail's dynamic energy follows V^2; the DRAM, SRAM and mesh rails do not move
    assert b.actions["compute.mac_fp16"][0] / a.actions["compute.mac_fp16"][0] == pytest.approx((0.618 / 0.517) ** 2)
    assert b.actions["l1.byte"][0] / a.actions["l1.byte"][0] == pytest.approx((0.618 / 0.517) ** 2)
    for k in ("dram.byte", "l3.byte", "network.byte_hop"):
        assert b.actions[k][0] == a.actions[k][0], k
    # static power: the minion rail's component scales with V^exponent, the board's stays
    assert hi.static_scale == {"minion_rail": pytest.approx((0.618 / 0.517) ** 1.23)}


def test_etsoc1_static_power_by_rail():
    """The energy table's idle power split by rail (the cards' telemetry), and the DVFS sweep's points
    scale only the minion rail: at the measured 800 MHz point the board idles at the measured 35.0 W."""
    base = {"file": "targets/etsoc1.yaml"}
    _, e600, _ = build(Hardware(**base), CONFIGS_DIR / "t.yaml")
    _, e800, _ = build(Hardware(**base, params={"freq_hz": 8e8}), CONFIGS_DIR / "t.yaml")
    _, e300, _ = build(Hardware(**base, params={"freq_hz": 3e8}), CONFIGS_DIR / "t.yaml")
    assert e600.static_w == pytest.approx(28.1, abs=0.01)  # 9.77 + 18.33
    assert e800.static_w == pytest.approx(35.0, abs=0.05)  # 9.77 x (0.618 / 0.517)^2.99 + 18.33
    assert e300.static_w == pytest.approx(9.77 * (0.40 / 0.517) ** 2.99 + 18.33, rel=1e-6)  # the 0.40 V floor
    with pytest.raises(SimError, match="no component"):
        e600.scaled({"leakage": 1.0})


def test_int8_runs_on_the_int8_tensor_rate():
    c16 = chip(dram_bytes_per_s=1e15).cost(gemm(512, 1024, 1024), Precision(16, 16))
    c8 = chip(dram_bytes_per_s=1e15).cost(gemm(512, 1024, 1024), Precision(8, 8))
    assert c8.actions["compute.mac_int8"][0] == 512 * 1024 * 1024 and c8.actions["compute.mac_fp16"][0] == 0
    assert c16.math_cycles[0] / c8.math_cycles[0] == pytest.approx(4.0, rel=0.01)  # 128 vs 32 ops per cycle


def test_mesh_hops_to_the_memory_edges():
    p = chip(shires=32, mesh_columns=8).params
    assert list(shire_hops(p)[:8]) == [1, 2, 3, 4, 4, 3, 2, 1]


def test_etsoc1_file_loads_at_its_measured_operating_point():
    t, e, _ = build(Hardware(file="targets/etsoc1.yaml"), CONFIGS_DIR / "t.yaml")
    assert t.params.voltage == pytest.approx(0.517)
    assert t.peak_macs_per_cycle(8, 8) == 32 * 32 * 64  # 1,024 minions x 64 int8 MACs
    assert e.pj("dram.byte") == 114.6
