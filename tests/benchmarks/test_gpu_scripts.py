"""benchmarks/gpu_attention.py and benchmarks/gpu_dispatch.py: their CPU quick runs (structure, not
speed) and the attention op table they price on the GPU target against the tracer's."""

import csv
import importlib.util
import itertools
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str, out: Path) -> list[dict]:
    """Run benchmarks/<name>.py --device cpu --quick on one thread (to keep the machine quiet); its CSV
    rows, whose header is the script's COLUMNS."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--device", "cpu", "--quick",
                        "--out", str(out)], check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"wrote {out}" in p.stdout
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == _module(name).COLUMNS
    return rows


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _seconds(x: str) -> float:
    v = float(x)
    assert math.isfinite(v) and v > 0, x
    return v


@pytest.mark.slow
def test_attention_quick_run_on_cpu(tmp_path):
    ga = _module("gpu_attention")
    rows = _script("gpu_attention", tmp_path / "attention.csv")
    shapes = {("prefill", s, s) for s in ga.QUICK_PREFILL} | {("decode", 1, L) for L in ga.QUICK_DECODE}
    got = {}
    for r in rows:
        key = (r["phase"], int(r["q_len"]), int(r["kv_len"]), r["backend"])
        assert key not in got, key
        got[key] = r
        assert (r["batch"], r["heads"], r["head_dim"], r["dtype"], r["device"]) == ("1", "32", "128", "bf16", "cpu")
        _seconds(r["measured_s"])
        assert r["measured_graph_s"] == "" and r["predicted_s"] == ""  # cuda only
        # every backend computes the same attention as the fp32 reference, to bf16's precision
        assert 0 <= float(r["max_abs_err"]) < 0.05, r
    # SDPA as torch picks it, SDPA's math backend and the unfused ops run everywhere
    for shape in shapes:
        for backend in ("sdpa", "sdpa_math", "unfused"):
            assert (*shape, backend) in got, (shape, backend)
        picked = got[(*shape, "sdpa")]["kernel"]
        assert picked.startswith("_scaled_dot_product"), picked
        forced = {got[k]["kernel"] for k in got if k[:3] == shape and k[3] not in ("sdpa", "unfused")}
        assert picked in forced, (picked, forced)  # the default is one of the backends that ran on their own
        assert "math" in got[(*shape, "sdpa_math")]["kernel"]
    assert {k[:3] for k in got} == shapes
    assert {k[3] for k in got} <= {*ga.SDPA_BACKENDS, "unfused"}


@pytest.mark.slow
def test_dispatch_quick_run_on_cpu(tmp_path):
    gd = _module("gpu_dispatch")
    rows = _script("gpu_dispatch", tmp_path / "dispatch.csv")
    by = {r["what"]: r for r in rows}
    assert len(by) == len(rows) == 19
    kinds = {r["op_kind"] for r in rows}
    assert kinds == {"view", "elementwise", "copy", "reduction", "softmax", "gemm", "embedding", "index", "module",
                     "module_hook", "adapter", "sampling"}
    for r in rows:
        assert r["device"] == "cpu" and int(r["calls"]) > 0
        _seconds(r["per_call_s"])
    # a passthrough module runs no aten op: the profiler has nothing (hook or not); every other row has its ops
    for what in ("nn.Module passthrough", "nn.Module passthrough + hook"):
        assert by[what]["profiler_self_s"] == "" and by[what]["aten_ops"] == ""
    ops = {r["what"]: {e.split("=")[0] for e in r["aten_ops"].split(";")} for r in rows if r["aten_ops"]}
    assert len(ops) == 17
    for r in rows:
        if r["aten_ops"]:
            _seconds(r["profiler_self_s"])
    assert "aten::index_copy_" in ops["index_copy_ kv cache"]
    assert "aten::embedding" in ops["embedding 1 token"]
    assert "aten::argmax" in ops["argmax 32000"] and "aten::item" in ops["argmax 32000 .item()"]
    assert "aten::_softmax" in ops["softmax"]
    assert {"aten::addmm", "aten::add"} <= ops["adapter(nn.Linear 64x64)"]
    assert "aten::add" not in ops["nn.Linear 64x64"]
    assert "aten::clone" in ops["contiguous"] and "aten::clone" not in ops["transpose"]


@pytest.mark.slow
def test_attention_op_table_is_the_traced_one_and_prices_on_h100():
    """The hand-built table of gpu_attention.py equals the tracer's layer-0 attention of Llama-2-7B
    (prefill of 128; decode over 128 keys: a context of 127 plus the new token), and the H100's price
    of decode grows with the context and is no less than reading K and V once from HBM."""
    from sim.validate import gpu_target_for
    from workloads import trace

    ga = _module("gpu_attention")
    cols = ["role", "kind", "dtype", "flops", "bytes_read", "bytes_written", "weight_bytes", "kv_bytes_read",
            "kv_bytes_written", "gemm_m", "gemm_n", "gemm_k", "gemm_batch"]
    roles = ["attn_score", "attn_mask", "attn_softmax", "attn_context"]
    for phase, seq, ctx, decode in (("prefill", 128, 0, False), ("decode", 1, 127, True)):
        df = trace("Llama-2-7B", phase, 1, seq, ctx, "fp16")
        traced = df[(df.layer == 0) & df.role.isin(roles)].reset_index(drop=True)[cols]
        mine = ga.attention_ops(1, 32, 128, seq, seq + ctx, decode)[cols]
        assert mine.equals(traced), (phase, mine, traced)
    h100 = gpu_target_for("NVIDIA H100 80GB HBM3")
    t = [ga.predicted_seconds(h100, ga.attention_ops(1, 32, 128, 1, L, True)) for L in ga.DECODE]
    assert all(a < b for a, b in itertools.pairwise(t)), t
    kv = 2 * 32 * ga.DECODE[-1] * 128 * 2
    assert t[-1] >= kv / h100.params.hbm_bytes_per_s


def test_device_checks_fit_a_lent_machines_time():
    """benchmarks/device_checks.sh caps every step with a timeout; together they stay within about
    8 minutes (a lent GPU's whole session has 15, start-up and a rerun included), and every e2e
    runtime it names is one the e2e validation runs."""
    import re

    from sim.validate_e2e import RUNTIMES

    text = (ROOT / "benchmarks" / "device_checks.sh").read_text()
    limits = [int(x) for x in re.findall(r"^\s*(?:PYTHON=\S+\s+)?timeout (\d+) ", text, re.M)]
    loops = len(re.findall(r"for model in Llama-2-7B Llama-3-8B", text))
    assert len(limits) >= 6 and loops == 1
    inner = int(re.search(r"for model in [^;]+; do\s+timeout (\d+)", text).group(1))
    total = sum(limits) + inner  # the loop's timeout runs twice
    assert total <= 8.5 * 60, total
    assert set(re.findall(r"--runtime (\w+)", text)) <= set(RUNTIMES)


@pytest.mark.slow
def test_hf_generate_host_quick_run(tmp_path):
    """benchmarks/hf_generate_host.py on a twin: the generate loop's time per token with and without
    PEFT adapters, per traced op of the suite's trace of the same step."""
    out = tmp_path / "h.csv"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hf_generate_host.py"), "--quick", "--out", str(out)],
                       check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["lora"]) for r in rows] == [("Phi-3-mini", "0"), ("Phi-3-mini", "1")]
    plain, lora = rows
    assert int(lora["traced_ops"]) > int(plain["traced_ops"]) > 1000
    for r in rows:
        assert _seconds(r["per_token_s"]) == pytest.approx(float(r["per_op_s"]) * int(r["traced_ops"]), rel=1e-9)
