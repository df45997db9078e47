"""The FPGA target on hand-worked small cases: the ternary unit's cycles (the RTL's formula), DDR
streaming, cores, on-chip weights, the row unit, and the D5005 prototype end to end."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import ternary
from sim.config import CONFIGS_DIR, Hardware
from sim.run import run
from sim.targets import build
from sim.targets.base import OpArrays
from sim.targets.fpga import FPGA, FPGAParams
from sim.targets.parts import Precision

ROOT = Path(__file__).resolve().parents[2]


def fpga(**kw) -> FPGA:
    base = dict(cores=1, freq_hz=1e8, ternary_units=1, ternary_lanes=4, row_lanes=4, ddr_bits_per_cycle=8,
                ddr_bytes_per_s=1e12, onchip_bytes=1 << 20, dsp_macs_per_cycle=16, node_nm=14)
    base.update(kw)
    return FPGA(FPGAParams(**base))


def ops(rows: list[dict]) -> OpArrays:
    cols = dict(kind="ternary_gemm", storage_bytes=2.0, flops=0, bytes_read=0, bytes_written=0,
                weight_bytes=0, kv_bytes_read=0, kv_bytes_written=0, gemm_m=0, gemm_n=0, gemm_k=0, gemm_batch=1)
    df = pd.DataFrame([{**cols, **r} for r in rows])
    return OpArrays(kind=df.kind.to_numpy(dtype=object), storage_bytes=df.storage_bytes.to_numpy(float),
                    **{c: df[c].to_numpy(np.int64) for c in ("flops", "bytes_read", "bytes_written", "weight_bytes",
                                                             "kv_bytes_read", "kv_bytes_written", "gemm_m", "gemm_n",
                                                             "gemm_k", "gemm_batch")})


def test_ternary_gemm_charges_the_units_formula():
    # 1 core, 1 unit of 4 lanes: 2 tokens x 8 outputs x 10 -> 16 dot products of ceil(10/4) = 3 beats, + 1
    c = fpga().cost(ops([dict(gemm_m=2, gemm_n=8, gemm_k=10)]), Precision(2, 8))
    assert c.math_cycles[0] == ternary.ternary_gemm_cycles(2, 8, 10, 4) == 2 * 8 * 3 + 1
    # its weights: 80 codes of 2 bits = 20 bytes at one byte per cycle, hidden under the compute
    assert c.dram_read_bytes[0] == 20 and c.mem_cycles[0] == 20
    assert c.compute_cycles[0] == 49
    assert c.actions["ternary.lane_op"][0] == 2 * 8 * 3 * 4  # padded lanes of the last beat included


def test_four_lanes_of_two_bit_codes_match_an_eight_bit_ddr_beat():
    c = fpga().cost(ops([dict(gemm_m=1, gemm_n=4096, gemm_k=4096)]), Precision(2, 8))
    assert c.mem_cycles[0] == 4096 * 4096 // 4 and c.math_cycles[0] == 4096 * 1024 + 1
    # eight lanes outrun the DDR: the op waits for its weights
    wide = fpga(ternary_lanes=8).cost(ops([dict(gemm_m=1, gemm_n=4096, gemm_k=4096)]), Precision(2, 8))
    assert wide.compute_cycles[0] == wide.mem_cycles[0] == 4096 * 4096 // 4
    # one byte per weight (8-bit codes): four times the DDR time
    byte = fpga(weight_code_bits=8.0).cost(ops([dict(gemm_m=1, gemm_n=4096, gemm_k=4096)]), Precision(2, 8))
    assert byte.compute_cycles[0] == 4096 * 4096


def test_cores_split_the_outputs_and_share_the_board_ddr():
    one = fpga().cost(ops([dict(gemm_m=1, gemm_n=1024, gemm_k=1024)]), Precision(2, 8))
    four = fpga(cores=4).cost(ops([dict(gemm_m=1, gemm_n=1024, gemm_k=1024)]), Precision(2, 8))
    assert four.math_cycles[0] - 1 == (one.math_cycles[0] - 1) // 4
    assert four.mem_cycles[0] == one.mem_cycles[0] // 4
    # the board caps the cores' DDR: 2 bytes per cycle at 100 MHz = 200 MB/s for all four
    capped = fpga(cores=4, ddr_bytes_per_s=2e8).cost(ops([dict(gemm_m=1, gemm_n=1024, gemm_k=1024)]), Precision(2, 8))
    assert capped.mem_cycles[0] == 1024 * 1024 // 4 // 2


def test_ordinary_gemm_weights_at_their_own_precision():
    """A non-ternary GEMM (a transformer's, on the DSPs) streams its weights at the weights' storage
    precision and its K/V at the cache's, not at the activations' bits (the bug of issue 21): an
    fp16 trace's 4096 x 4096 weight is 32 MB at w16, 16 MB at w8, 8 MB at w4, whatever the activations."""
    w16 = 4096 * 4096 * 2  # the trace's bytes (fp16)
    row = dict(kind="gemm", gemm_m=1, gemm_n=4096, gemm_k=4096, weight_bytes=w16)
    for wbits, abits in ((16, 16), (8, 16), (4, 16), (8, 8), (4, 8)):
        c = fpga().cost(ops([row]), Precision(wbits, abits))
        assert c.dram_read_bytes[0] == w16 * wbits // 16, (wbits, abits)
    kv = dict(kind="attn_matmul", gemm_m=1, gemm_n=128, gemm_k=128, kv_bytes_read=128 * 128 * 2)
    c = fpga().cost(ops([kv]), Precision(4, 16, kv_bits=8))
    assert c.dram_read_bytes[0] == 128 * 128
    # the trace end to end: a transformer's weights at w8a16 read half its fp16 bytes
    from workloads import trace

    df = trace("OPT-1.3B", "decode", 1, 1, 16)
    g = (df.kind == "gemm").to_numpy()
    c8 = fpga().cost(df, Precision(8, 16))
    assert c8.dram_read_bytes[g].sum() == pytest.approx(df.weight_bytes[g].sum() / 2, rel=1e-6)


def test_weights_on_chip_leave_the_ddr_idle():
    c = fpga(weights_on_chip=True).cost(ops([dict(gemm_m=1, gemm_n=64, gemm_k=64)]), Precision(2, 8))
    assert c.dram_read_bytes[0] == 0 and c.actions["onchip.read"][0] == 64 * 64 / 4
    assert c.compute_cycles[0] == c.math_cycles[0] == 64 * 16 + 1


def test_row_ops_spread_over_the_cores_row_units():
    c = fpga(cores=2).cost(ops([dict(kind="elementwise", flops=1000, bytes_read=4000, bytes_written=2000)]), Precision(2, 8))
    assert c.compute_cycles[0] == -(-1000 // 8) + ternary.ROW_LATENCY
    assert c.actions["row.lane_op"][0] == 1000


def test_d5005_prototype_block_end_to_end(tmp_path):
    """One d=512 block per token on the 1-core prototype: 3.41M ternary weights at 4 per cycle (60 MHz)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: {model: MMfreeLM-block512, batch: 1, prompt: 1, decode_tokens: 2, dtype: fp16}\n"
                   f"hardware: {{file: {ROOT / 'configs' / 'targets' / 'fpga_d5005_mmfree.yaml'}}}\n"
                   "run: {fidelity: simpy}\n")
    r = run(cfg)
    dec = r.ops[(r.ops.phase == "decode") & (r.ops.layer >= 0)]
    block_s = dec.time_s.sum() / 2
    weights = 4 * 512 * 512 + 2 * 1536 * 512 + 1536 * 512
    assert block_s == pytest.approx(weights / 4 / 60e6, rel=0.05)  # weight streaming dominates
    target, _, _ = build(Hardware(file="targets/fpga_d5005_mmfree.yaml"), CONFIGS_DIR / "t.yaml")
    assert target.ddr_rate() == 1.0  # 8 bits per cycle
