"""`sim run` end to end: quickstart sanity, fidelities agreeing, replication exact, determinism."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from sim import engine
from sim.report import write
from sim.engine.schedule import schedule
from sim.run import run
from sim.targets.parts import Precision
from workloads import trace, zoo

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
# the generic matrix reproductions (EasySpec's multi-GPU one and Lamarr's validation have their own
# runners and tests)
REPRODUCE = sorted(p for p in (ROOT / "configs").glob("*/reproduce.yaml")
                   if yaml.safe_load(p.read_text()).get("study") == "reproduce")


@pytest.fixture(scope="module")
def quick():
    return run(QUICKSTART)


def test_quickstart_decode_is_dram_bound_at_weight_bytes_over_bandwidth(quick):
    s = quick.summary
    p = quick.target.params
    weight_bytes = trace("Llama-2-7B", "decode", 1, 1, 256).weight_bytes.sum()
    per_token_s = weight_bytes / (p.dram_bits_per_cycle / 8) / p.freq_hz
    assert s["decode"]["time_per_token_s"] == pytest.approx(per_token_s, rel=0.10)
    dec = quick.ops[quick.ops.phase == "decode"]
    assert dec.loc[dec.bound == "memory", "time_s"].sum() > 0.95 * dec.time_s.sum()


def test_quickstart_prefill_is_compute_bound(quick):
    pre = quick.ops[quick.ops.phase == "prefill"]
    assert pre.loc[pre.bound == "compute", "time_s"].sum() > 0.8 * pre.time_s.sum()


def test_summary_is_consistent(quick):
    s, ops = quick.summary, quick.ops
    assert s["cycles"] == s["prefill"]["cycles"] + s["decode"]["cycles"] == int(ops.cycles.sum())
    assert s["latency_s"] == pytest.approx(s["cycles"] / 1e9)
    assert s["energy_j"] == pytest.approx(ops.energy_pj.sum() * 1e-12)
    assert s["energy_j"] == pytest.approx(sum(s["energy_by_component_j"].values()))
    assert s["tokens_per_j"] == pytest.approx(20 / s["energy_j"])
    assert len(s["decode"]["step_cycles"]) == 20
    assert s["decode"]["step_cycles"] == sorted(s["decode"]["step_cycles"])  # the cache grows
    # DRAM energy = bytes x 150 pJ (configs/energy/bitmod_28nm.yaml)
    dram_bytes = ops.dram_read_bytes.sum() + ops.dram_write_bytes.sum()
    assert s["energy_by_component_j"]["dram"] == pytest.approx(dram_bytes * 150e-12, rel=1e-6)


def test_simpy_and_analytic_agree_within_2_percent_on_the_quickstart(quick):
    b = run(QUICKSTART, fidelity="analytic")
    assert b.summary["cycles"] == pytest.approx(quick.summary["cycles"], rel=0.02)
    assert b.summary["energy_j"] == pytest.approx(quick.summary["energy_j"], rel=0.02)


def _tiles_per_op(config) -> int:
    """The most tiles any op of the reproduction's first run is split into on its target."""
    from sim.run import _prefill_arrays, prepare
    from sim.studies import reproduce

    _, runs = reproduce.load(config)
    prep = prepare(runs[0][3], config)
    w = prep.config.workload
    _, arrays = _prefill_arrays(prep.spec, w)
    return int(prep.target.cost(arrays, w.precision).n_tiles.max())


# only the reproductions whose targets split ops into tiles: with one tile per op the SimPy schedule
# has nothing to overlap within an op, and agreeing with the closed form would test nothing
TILED = [p for p in REPRODUCE if p.parent.name == "bitmod"]


def test_only_the_tiled_reproductions_are_compared():
    assert TILED and all(_tiles_per_op(p) > 1 for p in TILED)
    assert all(_tiles_per_op(p) == 1 for p in REPRODUCE if p not in TILED)


@pytest.mark.slow
@pytest.mark.parametrize("config", TILED, ids=lambda p: p.parent.name)
def test_simpy_and_analytic_agree_within_2_percent_on_every_tiled_reproduce_run(config):
    from sim.studies import reproduce

    a, ma, _ = reproduce.run(config, fidelity="simpy")
    b, mb, _ = reproduce.run(config, fidelity="analytic")
    assert len(a) == len(b) > 0
    for col in ("latency_s", "energy_j"):
        assert np.allclose(b[col], a[col], rtol=0.02), (a[col] / b[col]).describe()
    assert np.allclose(mb.simulated, ma.simulated, rtol=0.02)


@pytest.mark.slow
@pytest.mark.parametrize("model,batch,prompt", [("Llama-2-7B", 1, 2048), ("Llama-2-7B", 4, 1032),
                                                ("OPT-6.7B", 2, 512), ("Qwen2-7B", 1, 300)])
def test_fidelities_agree_across_shapes(tmp_path, model, batch, prompt):
    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg["workload"].update(model=model, batch=batch, prompt=prompt, decode_tokens=3)
    cfg["hardware"]["file"] = str(ROOT / "configs" / "targets" / "bitmod_fp16_baseline.yaml")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    a, b = run(path), run(path, fidelity="analytic")
    assert b.summary["cycles"] == pytest.approx(a.summary["cycles"], rel=0.02)


@pytest.mark.parametrize("phase,seq,ctx", [("prefill", 64, 0), ("decode", 1, 100)])
def test_layer_replication_equals_full_simulation(phase, seq, ctx, quick):
    df = trace("OPT-1.3B", phase, 1, seq, ctx)
    c = quick.target.cost(df, Precision(16, 16))
    fast = schedule(c, df["layer"].to_numpy(), "simpy")
    full = engine.simulate(c)
    assert fast.cycles == full.makespan
    assert fast.events < full.events / 5


def test_decode_interpolation_matches_simulating_every_step(tmp_path):
    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg["workload"].update(model="OPT-1.3B", prompt=64, decode_tokens=7)
    cfg["hardware"]["file"] = str(ROOT / "configs" / "targets" / "bitmod_fp16_baseline.yaml")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = run(path)
    from workloads import decode_template

    tpl = decode_template("OPT-1.3B")
    steps = []
    for k in range(7):
        t = tpl.at(64 + k)
        c = r.target.cost(t, Precision(16, 16))
        steps.append(schedule(c, t["layer"].to_numpy(), "simpy").cycles)
    assert r.summary["decode"]["cycles"] == pytest.approx(sum(steps), rel=1e-4)
    assert r.summary["decode"]["step_cycles"][0] == steps[0]
    assert r.summary["decode"]["step_cycles"][-1] == steps[-1]


@pytest.mark.slow
def test_same_config_gives_identical_outputs(tmp_path, quick):
    write(quick, tmp_path / "a")
    write(run(QUICKSTART), tmp_path / "b")
    for name in ("summary.json", "ops.parquet", "report.html"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_outputs(tmp_path, quick):
    out = write(quick, tmp_path / "q")
    import json

    import pandas as pd

    s = json.loads((out / "summary.json").read_text())
    for key in ("latency_s", "cycles", "energy_j", "tokens_per_s", "tokens_per_j", "utilization", "time_by_bound_s",
                "config", "version"):
        assert key in s
    assert s["config"]["hardware"]["params"]["pe_rows"] == 64  # the override, resolved
    ops = pd.read_parquet(out / "ops.parquet")
    for col in ("phase", "cycles", "time_s", "bound", "dram_read_bytes", "energy_pj", "energy_pj_dram", "layer"):
        assert col in ops.columns
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "Roofline" in html


def test_every_target_parameter_is_sourced():
    for f in (ROOT / "configs" / "targets").glob("*.yaml"):
        d = yaml.safe_load(f.read_text())
        missing = set(d["params"]) - set(d.get("sources", {}))
        assert not missing, (f.name, missing)


def test_every_energy_entry_is_sourced():
    from sim.energy import load_energy

    for f in (ROOT / "configs" / "energy").glob("*.yaml"):
        t = load_energy(f)
        for comp in t.components.values():
            for a in comp.actions.values():
                assert a.source.strip()


def test_encoders_cannot_decode(tmp_path):
    from models.errors import SimError

    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg["workload"].update(model="all-MiniLM-L6-v2", prompt=32)
    cfg["hardware"]["file"] = str(ROOT / "configs" / "targets" / "bitmod_fp16_baseline.yaml")
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SimError, match="encoder"):
        run(p)
    cfg["workload"]["decode_tokens"] = 0
    p.write_text(yaml.safe_dump(cfg))
    r = run(p)
    assert r.summary["prefill"]["tokens"] == 32 and "decode" not in r.summary
    assert zoo.get("all-MiniLM-L6-v2").kind == "encoder" and np.isfinite(r.summary["energy_j"])


def test_energy_tables_extend_others(tmp_path):
    from models.errors import SimError
    from sim.energy import load_energy

    t = load_energy(ROOT / "configs" / "energy" / "bitmod_28nm_bitmod_pe.yaml")
    base = load_energy(ROOT / "configs" / "energy" / "bitmod_28nm.yaml")
    assert t.pj("pe_array.pe_cycle") == 0.586 and base.pj("pe_array.pe_cycle") == 0.77
    assert t.pj("dram.read") == base.pj("dram.read") and t.pj("weight_buffer.write") == base.pj("weight_buffer.write")
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("extends: b.yaml\nname: a\nnode_nm: 28\ncomponents: {}\n")
    b.write_text("extends: a.yaml\nname: b\nnode_nm: 28\ncomponents: {}\n")
    with pytest.raises(SimError, match="a cycle"):
        load_energy(a)
    b.write_text(f"extends: {ROOT / 'configs' / 'energy' / 'bitmod_28nm.yaml'}\nname: b\nnode_nm: 28\n"
                 "components: {pe_array: null}\n")
    with pytest.raises(SimError, match="expected a mapping of components"):
        load_energy(b)


def test_decode_rows_sum_flops_over_the_steps_like_macs(quick):
    """ops.parquet's decode rows hold every number summed over the generated tokens, flops too."""
    from workloads import decode_template

    tpl = decode_template("Llama-2-7B")
    dec = quick.ops[quick.ops.phase == "decode"]
    steps = [tpl.at(256 + k) for k in range(20)]
    assert (dec.flops.to_numpy() == sum(s.flops.to_numpy() for s in steps)).all()
    mm = dec[dec.kind.isin(["gemm", "attn_matmul"])]
    assert (mm.flops == 2 * mm.macs).all()  # both summed: a MAC is 2 FLOPs in every step


def test_roofline_uses_consistent_columns_and_leaves_out_ops_without_dram_bytes(quick):
    from sim.report import roofline_points

    ops = quick.ops
    freq = quick.target.freq_hz
    pts = roofline_points(ops, freq)
    dram = ops.dram_read_bytes + ops.dram_write_bytes
    assert len(pts) and (dram[pts.index] > 0).all()
    # no op above the roof: the DRAM bound at its intensity, the array's peak
    peak = quick.target.peak_macs_per_cycle(16, 16) * 2 * freq
    bw = quick.target.dram_bytes_per_cycle() * freq
    assert (pts.achieved <= np.minimum(peak, pts.intensity * bw) * (1 + 1e-9)).all()
    # ... which the ops' shares of the critical path would break: some decode loads are prefetched
    share = ops.flops[pts.index] / ops.time_s[pts.index]
    assert (share > np.minimum(peak, pts.intensity * bw) * 1.01).any()
    left_out = ops[(ops.cycles > 0) & (ops.flops > 0) & (dram == 0)]
    assert len(left_out) and not set(left_out.index) & set(pts.index)  # ops on chip are left out
    np.testing.assert_allclose(pts.intensity, ops.flops[pts.index] / dram[pts.index])
    # a decode op the same in every step sits where one step of it does: both columns summed alike
    dec = ops[ops.phase == "decode"]
    row = int(np.flatnonzero(((dec.role == "q_proj") & (dec.kind == "gemm")).to_numpy())[0])
    i = dec.index[row]
    t = trace("Llama-2-7B", "decode", 1, 1, 256)
    one = quick.target.cost(t, Precision(16, 16))
    per_step = t.flops[row] / (one.dram_read_bytes[row] + one.dram_write_bytes[row])
    assert pts.intensity[i] == pytest.approx(per_step, rel=1e-12)


def test_run_validates_the_config_once(monkeypatch):
    from sim.config import Config

    calls = []
    validate = Config.model_validate
    monkeypatch.setattr(Config, "model_validate", lambda *a, **k: calls.append(1) or validate(*a, **k))
    r = run(QUICKSTART)
    assert len(calls) == 1 and r.config.workload.decode_tokens == 20
