"""Decode at scale: a generation costed by class and chunk and scheduled at sampled steps equals
the every-step computation (costs and energy exactly, cycles within the stated bound), and a long
generation runs in bounded memory."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.config import load_yaml
from sim.engine import schedule as sched
from sim.engine.schedule import STEP_RTOL, DecodeOps
from sim.run import execute, prepare
from sim.targets.base import OpArrays
from workloads import decode_template, trace

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ROOT / "configs" / "targets"
SUMMED = ["load_cycles", "compute_cycles", "store_cycles", "dram_read_bytes", "dram_write_bytes", "macs", "flops"]


def _config(tmp_path, model, prompt, tokens, target, params=None, fidelity="simpy") -> Path:
    cfg = {"name": "long", "workload": {"model": model, "batch": 1, "prompt": prompt, "decode_tokens": tokens,
                                         "dtype": "fp16"},
           "hardware": {"file": str(TARGETS / target), **({"params": params} if params else {})},
           "run": {"fidelity": fidelity}}
    path = tmp_path / f"{model}-{tokens}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _prep(path):
    raw, lines = load_yaml(path)
    return prepare(raw, path, lines)


def _dynamic_pj(r) -> np.ndarray:
    """Each decode op's energy less its static part (static power x its time): the action counts'."""
    dec = r.ops[r.ops.phase == "decode"]
    return dec.energy_pj.to_numpy() - r.energy.static_w * dec.time_s.to_numpy() * 1e12


def _check_against_every_step(path, tokens):
    sampled, full = execute(_prep(path)), execute(_prep(path), every_step=True)
    assert len(sampled.decode["sampled_steps"]) < tokens // 5  # sampled, not every step
    assert full.decode["sampled_steps"] == list(range(tokens))
    a = np.array(sampled.summary["decode"]["step_cycles"])
    b = np.array(full.summary["decode"]["step_cycles"])
    assert len(a) == tokens
    # the sampled steps are simulated: exact; every other step within the bound
    ks = sampled.decode["sampled_steps"]
    assert (a[ks] == b[ks]).all()
    assert np.abs(a - b).max() <= STEP_RTOL * b.max()
    assert abs(a.sum() - b.sum()) <= STEP_RTOL * b.sum()
    assert sampled.summary["decode"]["cycles"] == a.sum() == sampled.ops[sampled.ops.phase == "decode"].cycles.sum()
    # (costs and dynamic energy come from the same per-step sums in both modes; _check_costs_exact
    # checks them against a table of every step built independently)
    return sampled, full


def _reference_costs(path, tokens):
    """The generation's costs the old way: every step's every op in one table, costed at once."""
    prep = _prep(path)
    w = prep.config.workload
    tpl = decode_template(w.model, w.batch, 1, w.dtype)
    contexts = [w.prompt + k for k in range(tokens)]
    allc = prep.target.cost(OpArrays.from_template(tpl, contexts), w.precision)
    return tpl, contexts, prep, allc.sums(tokens)


def _check_costs_exact(r, path, tokens):
    tpl, contexts, prep, sums = _reference_costs(path, tokens)
    dec = r.ops[r.ops.phase == "decode"]
    for c in SUMMED[:-1]:
        assert (dec[c].to_numpy() == sums[c]).all(), c
    assert (dec.flops.to_numpy() == tpl.stacked(contexts)["flops"].sum(axis=0)).all()
    actions = {k[len("action:"):]: v for k, v in sums.items() if k.startswith("action:")}
    want = sum(prep.energy.apply(actions, np.zeros(len(dec))).values())
    np.testing.assert_allclose(_dynamic_pj(r), want, rtol=1e-12, atol=1e-6)


BITMOD = ("bitmod_fp16_baseline.yaml", {"pe_rows": 64, "pe_cols": 12})
H100 = ("gpu_h100_sxm.yaml", None)


@pytest.mark.parametrize("target,model,prompt,tokens", [
    (H100, "OPT-1.3B", 64, 150),
    (BITMOD, "OPT-1.3B", 64, 60),
    pytest.param(H100, "Qwen2-7B", 16, 300, marks=pytest.mark.slow),
    pytest.param(BITMOD, "OPT-1.3B", 64, 300, marks=pytest.mark.slow),
], ids=["h100-opt-150", "bitmod-opt-60", "h100-qwen2-300", "bitmod-opt-300"])
def test_sampled_decode_equals_every_step_within_the_bound(tmp_path, target, model, prompt, tokens):
    path = _config(tmp_path, model, prompt, tokens, target[0], target[1])
    sampled, _ = _check_against_every_step(path, tokens)
    _check_costs_exact(sampled, path, tokens)


def test_analytic_decode_evaluates_every_step(tmp_path):
    path = _config(tmp_path, "OPT-1.3B", 64, 40, "bitmod_fp16_baseline.yaml", fidelity="analytic")
    r = execute(_prep(path))
    assert r.decode["sampled_steps"] == list(range(40))
    _check_costs_exact(r, path, 40)


def test_segments_are_halved_until_they_pass(tmp_path, monkeypatch):
    """With a tighter bound the checks fail on the whole generation: segments are halved and more
    steps simulated, and every step is still within the (tighter) bound of the every-step schedule
    (on the GPU, whose schedule is the costs' closed form, the bound holds at every step, up to the
    rounding of each interpolated op to whole cycles)."""
    path = _config(tmp_path, "OPT-1.3B", 64, 200, "gpu_h100_sxm.yaml")
    loose = execute(_prep(path))
    monkeypatch.setattr(sched, "STEP_RTOL", 2e-5)
    tight, full = execute(_prep(path)), execute(_prep(path), every_step=True)
    assert len(tight.decode["sampled_steps"]) > len(loose.decode["sampled_steps"]) == 3
    a = np.array(tight.summary["decode"]["step_cycles"])
    b = np.array(full.summary["decode"]["step_cycles"])
    n_ops = int((tight.ops.phase == "decode").sum())
    assert (np.abs(a - b) <= 2e-5 * b + 0.5 * n_ops).all()
    assert np.abs(a - b).max() <= np.abs(np.array(loose.summary["decode"]["step_cycles"]) - b).max()


def test_generation_is_costed_without_its_step_by_op_table(tmp_path, monkeypatch):
    """The context-independent ops are costed once; the others one per class, in chunks."""
    calls = []
    path = _config(tmp_path, "OPT-1.3B", 64, 1900, "gpu_h100_sxm.yaml")
    prep = _prep(path)
    cost = prep.target.cost
    monkeypatch.setattr(prep.target, "cost", lambda ops, *a: calls.append(len(ops)) or cost(ops, *a))
    monkeypatch.setattr(sched, "_CHUNK_ROWS", 4096)
    r = execute(prep)
    n_ops = int((r.ops.phase == "decode").sum())
    assert max(calls[1:]) <= max(4096, n_ops)  # after the prefill, no call costs more than a chunk or a step
    assert sum(calls) < 1900 * n_ops / 50
    tpl = decode_template("OPT-1.3B")
    assert tpl.varying().sum() <= n_ops / 8
    assert len(DecodeOps.of(tpl).reps) <= 6  # one class per context-dependent op of a layer


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_long_generation_runs_in_bounded_memory(tmp_path):
    """8,192 decode steps of Qwen2-7B on the H100: a process's peak RSS barely above a 64-step run's
    (the every-step table of the old code held 8,192 x 2,211 rows of costs: gigabytes).  The peak is
    the child's own address space's (VmHWM): its getrusage maxrss would include this big parent's
    RSS, inherited across fork and exec on Linux."""
    decode_template("Qwen2-7B")  # traces on disk: the children load them
    trace("Qwen2-7B", "prefill", 1, 16)
    code = ("import json, re, sys; from sim.run import run; r = run(sys.argv[1]); "
            "hwm = int(re.search(r'VmHWM:\\s*(\\d+)', open('/proc/self/status').read()).group(1)); "
            "print(json.dumps({'rss_mb': hwm / 1024, 'steps': len(r.summary['decode']['step_cycles'])}))")
    rss = {}
    for tokens in (64, 8192):
        path = _config(tmp_path, "Qwen2-7B", 16, tokens, "gpu_h100_sxm.yaml")
        p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                           cwd=ROOT)
        out = json.loads(p.stdout.strip().splitlines()[-1])
        assert out["steps"] == tokens
        rss[tokens] = out["rss_mb"]
    assert rss[8192] < 1024, rss
    assert rss[8192] - rss[64] < 150, rss
