"""The FPGA target on hand-worked small cases: the ternary unit's cycles (the RTL's formula), DDR
streaming, cores, on-chip weights, the row unit, and the D5005 prototype end to end."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models import ternary
from models.errors import SimError
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
    """One d=512 block per token on the 1-core prototype: 3.41M ternary weights as 2-bit codes, read a
    byte per request with one in flight, each request 80 ns (4.8 cycles at 60 MHz) plus a cycle."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: {model: MMfreeLM-block512, batch: 1, prompt: 1, decode_tokens: 2, dtype: fp16}\n"
                   f"hardware: {{file: {ROOT / 'configs' / 'targets' / 'fpga_d5005_mmfree.yaml'}}}\n"
                   "run: {fidelity: simpy}\n")
    r = run(cfg)
    dec = r.ops[(r.ops.phase == "decode") & (r.ops.layer >= 0)]
    block_s = dec.time_s.sum() / 2
    weights = 4 * 512 * 512 + 2 * 1536 * 512 + 1536 * 512
    assert block_s == pytest.approx(weights / 4 * (80e-9 * 60e6 + 1) / 60e6, rel=0.02)  # weight reads dominate
    target, _, _ = build(Hardware(file="targets/fpga_d5005_mmfree.yaml"), CONFIGS_DIR / "t.yaml")
    assert target.ddr_rate() == pytest.approx(1 / 5.8)
    # the same core filling the device: the synthesized core's ALMs bind
    dev, energy, _ = build(Hardware(file="targets/fpga_d5005_mmfree.yaml", params={"cores": "fit"}), CONFIGS_DIR / "t.yaml")
    core = dev.resources["core"]["alms"]
    assert dev.params.cores == (933_120 - 54_487) // core and dev.resources["binding"] == "alms"
    # its clocked logic: the shell's at 299.76 MHz and the cores' at 60 MHz, 1.44 W per 1e5 ALMs at 100 MHz
    logic = (54_487 * 299.76e6 + dev.params.cores * core * 60e6) / 1e13 * 1.44
    assert energy.components["logic"].static_w * energy.static_scale["logic"] == pytest.approx(logic)


#: the D5005's FPGA rails idle with its shell (fpgainfo bmc, OFS getting-started guide): core, VCCERAM,
#: VCCR and VCCT, volts x amps
IDLE_RAILS_W = 0.88 * 11.60 + 0.90 * 0.18 + 1.12 * 0.55 + 1.12 * 0.14


def test_static_power_on_the_telemetry_basis():
    """static_basis telemetry: the board's FPGA rails read idle with the shell (shell_idle) replace the
    estimator's static figures and the shell's clocked logic; the cores' clocked logic stays."""
    est, e_est, _ = build(Hardware(file="targets/fpga_d5005_mmfree.yaml", params={"cores": "fit"}), CONFIGS_DIR / "t.yaml")
    tel, e_tel, _ = build(Hardware(file="targets/fpga_d5005_mmfree.yaml",
                                   params={"cores": "fit", "static_basis": "telemetry"}), CONFIGS_DIR / "t.yaml")
    assert tel.params.cores == est.params.cores
    cores_logic = est.params.cores * est.core["alms"] * 60e6 / 1e13 * 1.44
    shell_logic = 54_487 * 299.76e6 / 1e13 * 1.44
    assert e_est.static_w == pytest.approx(4.5 + shell_logic + cores_logic)
    assert e_tel.static_w == pytest.approx(IDLE_RAILS_W + cores_logic, abs=0.01)
    # a table without the idle reading: the estimator basis runs, the telemetry basis names what is missing
    from sim.energy import EnergyTable

    bare = EnergyTable(name="bare", node_nm=14, components={k: v for k, v in e_est.components.items() if k != "shell_idle"})
    assert bare.scaled(est.static_scale).static_w == pytest.approx(e_est.static_w)
    with pytest.raises(SimError, match="no component shell_idle"):
        bare.scaled(tel.static_scale)


def test_ddr_requests_by_littles_law():
    # 8-bit port (1 B/cycle) at 100 MHz; 1-byte requests, one in flight, 50 ns (5 cycles): 1 / (5 + 1)
    t = fpga(ddr_request_bytes=1, ddr_latency_s=50e-9)
    assert t.core_read_rate() == pytest.approx(1 / 6)
    # 64-byte requests: 64 / (5 + 64); 16 in flight cover the latency, the port binds
    assert fpga(ddr_request_bytes=64, ddr_latency_s=50e-9).core_read_rate() == pytest.approx(64 / 69)
    assert fpga(ddr_request_bytes=64, ddr_outstanding=16, ddr_latency_s=50e-9).core_read_rate() == 1.0
    # a ternary GEMM's weights come at that rate: 600 B of 2-bit codes take 600 x 6 cycles
    c = t.cost(ops([dict(gemm_m=1, gemm_n=40, gemm_k=60)]), Precision(2, 8))
    assert c.mem_cycles[0] == 600 * 6 and c.compute_cycles[0] == 600 * 6
    # the board's cap still binds many cores
    assert fpga(cores=1000, ddr_bytes_per_s=1e9, ddr_request_bytes=1, ddr_latency_s=50e-9).ddr_rate() == 10.0
    with pytest.raises(Exception, match="go together"):
        fpga(ddr_request_bytes=64)


def test_cores_that_fit_the_device_beside_the_shell():
    from hw.synth import core_resources

    core = core_resources(1, 4, 4)
    dev = dict(device_alms=100_000, device_m20k=50, device_dsp=5000, shell_alms=20_000, shell_m20k=10)
    t = fpga(cores="fit", **dev)
    want = int(min(80_000 // core["alms"], 40 // core["m20k"], 5000 // core["dsp"]))
    assert t.params.cores == want and t.resources["binding"] == "alms"
    # few M20K: memory binds
    assert fpga(cores="fit", **{**dev, "device_m20k": 13}).params.cores == 3
    assert fpga(cores=want, **dev).params.cores == want
    from sim.memory import Infeasible

    fpga(cores=want, **dev).check_fits()
    with pytest.raises(Infeasible, match=rf"{want + 1} cores do not fit the device.*room for {want} cores \(alms bind\)"):
        fpga(cores=want + 1, **dev).check_fits()
    with pytest.raises(Infeasible, match="does not fit the device beside the shell"):
        fpga(cores="fit", **{**dev, "device_alms": 20_100}).check_fits()
    with pytest.raises(Exception, match="cores: fit needs"):
        fpga(cores="fit")


def test_a_run_with_more_cores_than_fit_is_refused_before_tracing_and_a_sweep_point_is_infeasible(tmp_path):
    from sim.memory import Infeasible
    from sim.sweep import run_batch

    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: {model: MMfreeLM-block512, batch: 1, prompt: 1, decode_tokens: 1, dtype: fp16}\n"
                   f"hardware: {{file: {ROOT / 'configs' / 'targets' / 'fpga_d5005_mmfree.yaml'}, "
                   "params: {cores: 1000}}\nrun: {fidelity: analytic}\n")
    with pytest.raises(Infeasible, match=r"hardware.*1000 cores do not fit the device.*room for \d+ cores"):
        run(cfg)
    import yaml

    [(key, status, err, _, _)] = run_batch([("k", yaml.safe_load(cfg.read_text()), str(cfg))])
    assert status == "infeasible" and "do not fit the device" in err


def test_the_matmulfree_pages_figures():
    """The figures docs/systems/matmulfree.md quotes, from the target, its energy table and the golden file."""
    dev, energy, _ = build(Hardware(file="targets/fpga_d5005_mmfree.yaml", params={"cores": "fit"}), CONFIGS_DIR / "t.yaml")
    one, one_energy, _ = build(Hardware(file="targets/fpga_d5005_mmfree.yaml"), CONFIGS_DIR / "t.yaml")
    cores, core = dev.params.cores, dev.resources["core"]["alms"]
    logic = energy.components["logic"].static_w * energy.static_scale["logic"]
    shell = one_energy.components["logic"].static_w * one_energy.static_scale["logic"] - 1.44 * core * 60e6 / 1e13
    g = pd.read_csv(ROOT / "results" / "golden" / "matmulfree" / "paper_vs_sim.csv").set_index("metric")
    implied = [g.loc[m, "simulated"] * cores / g.loc[m, "paper"] for m in
               ("mmfree_370m_ms_per_token_projected", "mmfree_1p3b_ms_per_token_projected")]
    afu = energy.components["logic"].static_w * (125_009.4 - 54_487) * 299.76e6 / 1e13
    figures = {"324 cores": cores, "2,709 ALMs": core, "shell's 2.35 W": shell, "9.94 W": logic,
               "7.58 W": logic - shell, "468 and 713": implied, "83.6 ms": g.loc["block_d512_ms", "simulated"],
               "15.0 W": g.loc["power_w_projected", "simulated"],
               "19.3 W": g.loc["power_w_projected_telemetry", "simulated"],
               "11.14 W": IDLE_RAILS_W,
               # OFS_top less the shell is the exerciser AFU; clocked as the shell's logic, and the row without it
               "3.04 W": afu, "16.2 W": g.loc["power_w_projected_telemetry", "simulated"] - afu}
    page = (ROOT / "docs" / "systems" / "matmulfree.md").read_text().replace("\n", " ")
    for text, value in figures.items():
        assert text in page, text
        shown = [x.replace(",", "") for x in re.findall(r"[\d,]+\.?\d*", text) if x.strip(",")]
        values = value if isinstance(value, list) else [value]
        # each figure as the page rounds it: to the decimals it shows
        decimals = [len(x.partition(".")[2]) for x in shown[:len(values)]]
        assert [round(v, d) for v, d in zip(values, decimals)] == [float(x) for x in shown[:len(values)]], (text, values)


def test_cores_are_positive_and_a_run_reports_the_fitted_count(tmp_path):
    for bad in (0, -3):
        with pytest.raises(Exception, match="greater than 0"):
            fpga(cores=bad)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: {model: MMfreeLM-block512, batch: 1, prompt: 1, decode_tokens: 1, dtype: fp16}\n"
                   f"hardware: {{file: {ROOT / 'configs' / 'targets' / 'fpga_d5005_mmfree.yaml'}, params: {{cores: fit}}}}\n"
                   "run: {fidelity: analytic}\n")
    hw = run(cfg).summary["config"]["hardware"]
    assert hw["params"]["cores"] == 324 and hw["resources"]["binding"] == "alms"


def test_a_rule_across_parameters_set_in_the_config_names_the_config(tmp_path, capsys):
    from sim.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: {model: MMfreeLM-block512, batch: 1, prompt: 1, decode_tokens: 1, dtype: fp16}\n"
                   f"hardware:\n  file: {ROOT / 'configs' / 'targets' / 'fpga_d5005_mmfree.yaml'}\n"
                   "  params: {cores: fit, device_alms: null, device_m20k: null, device_dsp: null}\n")
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}: hardware.params" in err and "cores: fit needs the device's resources" in err


def test_weights_on_chip_that_do_not_fit_are_refused_without_a_split_the_fpga_cannot_do(tmp_path):
    from sim.memory import Infeasible

    cfg = tmp_path / "c.yaml"
    cfg.write_text("workload: {model: MMfreeLM-370M, batch: 1, prompt: 1, decode_tokens: 1, dtype: fp16, weight_bits: 2}\n"
                   f"hardware: {{file: {ROOT / 'configs' / 'targets' / 'fpga_d5005_mmfree.yaml'}, "
                   "params: {weights_on_chip: true}}\n")
    with pytest.raises(Infeasible, match=r"needs 0\.0925 GB \(weights 0\.0925.*against 0\.0289 GB of device memory") as e:
        run(cfg)
    assert "devices sharing it" not in str(e.value) and not str(e.value).rstrip().endswith(":")
