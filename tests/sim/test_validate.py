"""`sim validate`: shape sets, the host-CPU model on a hand-worked case, the CPU run end to end, and
the GPU model against every committed GPU measurement set."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.errors import SimError
from sim import validate
from sim.cli import main
from sim.targets.cpu import HostCPU, HostCPUParams, gemm_time
from sim.targets.parts import Precision

ROOT = Path(__file__).resolve().parents[2]


def flat_params(**kw) -> HostCPUParams:
    """A host with round numbers: 100 GFLOP/s, efficiencies 1 except a narrow M, 10/100 GB/s."""
    ones = [(1, 1.0), (1024, 1.0)]
    base = dict(threads=2, peak_flops_per_s={"fp32": 1e11}, eff_m={"fp32": [(1, 0.25), (16, 1.0)]},
                eff_n={"fp32": ones}, eff_k={"fp32": ones}, stream_rows={"fp32": [(1, 1e-8, 1e10), (32, 1e-8, 1e10)]},
                batched_entry={"fp32": [(2.0, 1e-6), (2.0 * 64**3, 2 * 64**3 / 1e11)]},
                small_gemm={"fp32": [(2.0, 1e-7), (2.0 * 8**3, 1e-7)]},
                dram_bytes_per_s=2e10, cache_bytes_per_s=1e11, llc_bytes=1 << 20, overhead_s=1e-6)
    base.update(kw)
    return HostCPUParams(**base)


def test_host_cpu_gemm_time_by_hand():
    p = flat_params()
    # compute-bound, in cache: 2*64*64*64 flops at 1e11 + overhead
    r = gemm_time(p, 64, 64, 64, 1, "fp32")
    assert r["time_s"] == pytest.approx(1e-6 + 2 * 64**3 / 1e11)
    # M = 4 runs at eff_m(4) = 0.25 + (1 - 0.25) * log2(4)/log2(16) = 0.625
    r = gemm_time(p, 4, 128, 128, 1, "fp32")
    assert r["eff"] == pytest.approx(0.625)
    # a flat GEMM whose B is far larger than the cache streams B row by row (10 ns per row + its bytes
    # at 1e10), A and C from the cache at 1e11
    r = gemm_time(p, 1, 4096, 4096, 1, "fp32")
    assert r["time_s"] == pytest.approx(1e-6 + 4096 * (1e-8 + 4096 * 4 / 1e10) + 2 * 4096 * 4 / 1e11)
    assert r["mem_s"] > r["compute_s"]
    # told that B is resident, all three come from the cache; told that a small B is cold, it streams
    nbytes = (4096 + 4096 * 4096 + 4096) * 4
    assert gemm_time(p, 1, 4096, 4096, 1, "fp32", b_resident=True)["mem_s"] == pytest.approx(nbytes / 1e11)
    assert gemm_time(p, 1, 64, 64, 1, "fp32", b_resident=False)["mem_s"] == pytest.approx(
        64 * (1e-8 + 64 * 4 / 1e10) + 2 * 64 * 4 / 1e11)
    # a single small GEMM costs at least the measured cube of its flops (up to 8^3: 0.1 us), and past the
    # largest measured cube the model alone
    assert gemm_time(flat_params(overhead_s=0.0), 8, 8, 8, 1, "fp32")["time_s"] == pytest.approx(1e-7)
    assert gemm_time(p, 16, 16, 16, 1, "fp32")["time_s"] == pytest.approx(1e-6 + 2 * 16**3 / 1e11)
    # a batch of tiny GEMMs costs the measured per-entry time, not its flops
    r = gemm_time(p, 1, 1, 1, 32, "fp32")
    assert r["time_s"] == pytest.approx(1e-6 + 32 * 1e-6)
    with pytest.raises(SimError, match="not measured at 'bf16'"):
        gemm_time(p, 1, 1, 1, 1, "bf16")


def test_host_cpu_target_costs_a_trace():
    from workloads import trace

    df = trace("Llama-2-7B", "decode", 1, 1, 64)
    c = HostCPU(flat_params()).cost(df, Precision(32, 32))
    mm = df.kind.isin(["gemm", "attn_matmul"]).to_numpy()
    assert (c.compute_cycles[mm] > 0).all() and c.macs[mm].sum() == (df.gemm_batch * df.gemm_m * df.gemm_n
                                                                      * df.gemm_k)[mm].sum()
    assert (c.compute_cycles[df.kind.to_numpy() == "view"] == 0).all()
    # a 7B model's weights do not fit the cache: every projection streams its weight (a 4096 x 4096
    # projection takes at least its bytes at the streaming rate), where alone it would be found there
    q = ((df.role == "q_proj") & (df.kind == "gemm")).to_numpy()
    assert (c.compute_cycles[q] * 1e-9 >= 4096 * 4096 * 4 / 1e10).all()
    small = HostCPU(flat_params(llc_bytes=1 << 40)).cost(df, Precision(32, 32))
    assert (small.compute_cycles[q] < c.compute_cycles[q]).all()


def test_shape_sets(tmp_path):
    d = validate.shape_set("default")
    assert set(d["set"]) == {"zoo", "square", "flat"}
    assert not d.duplicated(subset=["M", "N", "K", "batch"]).any()
    # the zoo GEMMs include decode (M = 1) and attention's batched matmuls (batch = heads)
    assert ((d["set"] == "zoo") & (d.M == 1)).any() and (d.batch == 32).any()
    # calibration cubes are not validation shapes
    assert not ((d.M == d.N) & (d.N == d.K) & d.M.isin([1024, 1536])).any()
    f = tmp_path / "s.csv"
    f.write_text("M,N,K\n8,16,32\n8,16,32\n")
    s = validate.shape_set(str(f))
    assert len(s) == 1 and s.batch.iloc[0] == 1
    f.write_text("M,N\n1,2\n")
    with pytest.raises(SimError, match="missing column"):
        validate.shape_set(str(f))
    f.write_text("M,N,K\n0,2,3\n")
    with pytest.raises(SimError, match="positive"):
        validate.shape_set(str(f))
    with pytest.raises(SimError, match="neither a shape set"):
        validate.shape_set("nope")


@pytest.mark.timing
def test_validate_cpu_end_to_end(tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["validate", "--device", "cpu", "--shapes", "smoke", "--quick", "--samples", "2",
                 "--out", str(out)]) == 0
    for f in ("measured.csv", "machine.json", "calibration.yaml", "predictions.csv", "summary.json",
              "validation.png"):
        assert (out / f).stat().st_size > 0, f
    m = pd.read_csv(out / "measured.csv")
    assert len(m) == len(validate.shape_set("smoke")) and (m.measured_s > 0).all()
    # two passes, their mean compared, their spread reported as the machine's repeatability
    assert np.allclose(m.measured_s, (m.measured_pass1_s + m.measured_pass2_s) / 2)
    assert np.allclose(m.retest, (m[["measured_pass1_s", "measured_pass2_s"]].max(axis=1)
                                  - m[["measured_pass1_s", "measured_pass2_s"]].min(axis=1)) / m.measured_s)
    info = json.loads((out / "machine.json").read_text())
    assert info["device"] == "cpu" and info["threads"] >= 1 and info["torch"]
    s = json.loads((out / "summary.json").read_text())
    p = pd.read_csv(out / "predictions.csv")
    assert s["mape"] == pytest.approx(p.error.abs().mean())
    assert np.isfinite(p.predicted_s).all() and (p.predicted_s > 0).all()
    # an order-of-magnitude sanity bound even on the smallest set and the shortest calibration
    assert s["median_ape"] < 1.0
    assert s["retest_mean"] == pytest.approx(m.retest.mean())
    assert "MAPE" in capsys.readouterr().out


def test_validate_bad_input():
    assert main(["validate", "--device", "tpu"]) == 2
    assert main(["validate", "--device", "cpu", "--samples", "0"]) == 2
    import torch

    if not torch.cuda.is_available():
        assert main(["validate", "--device", "cuda"]) == 2


def _gpu_sets():
    return sorted(p.parent for p in (ROOT / "results" / "validation").glob("*/machine.json")
                  if json.loads(p.read_text()).get("device") == "cuda")


@pytest.mark.parametrize("folder", _gpu_sets() or [None])
def test_gpu_model_against_committed_measurements(folder):
    """The GPU model against every committed measurement set (device time: CUDA-graph replay).

    The goal is a MAPE of at most 8% (issue 20); the H100 set (measured 2026-11-27, predicted again
    by ``sim validate --from`` whenever the model moves) gives 9.3% (median 5.8%): the model
    over-predicts kernels of a few microseconds (it charges the 3 us eager launch of its file, the
    graph-replayed floor measured ~2.6 us).  So this test holds the model to the median goal and to
    no regression past the MAPE recorded with the set (the README reports the gap)."""
    if folder is None:
        pytest.skip("no GPU measurement set is committed under results/validation/ yet: run "
                    "benchmarks/gpu_validate.sh on a CUDA machine and commit its folder")
    info = json.loads((folder / "machine.json").read_text())
    recorded = json.loads((folder / "summary.json").read_text())
    meas = pd.read_csv(folder / "measured.csv")
    pred = validate.predict(meas, "cuda", validate.gpu_target_for(info["name"]))
    ape = pred.error.abs()
    assert ape.median() <= 0.10, validate.summarize(pred, info)
    assert ape.mean() <= recorded["mape"] + 0.005, validate.summarize(pred, info)
    # large kernels (>= 20 us: memory- or compute-bound, launch negligible) within the 10% goal
    assert ape[pred.measured_s >= 2e-5].mean() <= 0.10, validate.summarize(pred, info)


def test_gpu_prediction_of_the_committed_shape_set():
    """The GPU script's shape file is the `gpu` set, and every GPU target file predicts all of it."""
    shapes = pd.read_csv(ROOT / "benchmarks" / "gpu_shapes.csv")
    fresh = validate.shape_set("gpu")
    assert shapes[["M", "N", "K", "batch"]].equals(fresh[["M", "N", "K", "batch"]])
    for name in ("NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB"):
        pred = validate.predict(shapes.assign(dtype="fp16", measured_s=1.0), "cuda", validate.gpu_target_for(name))
        assert (pred.predicted_s > 0).all() and np.isfinite(pred.predicted_s).all()
        flat = pred[(pred.M == 1) & (pred.batch == 1) & (pred.N * pred.K >= 1 << 20)]
        assert (flat.bound == "memory").all()
        big = pred[(pred.M == 8192) & (pred.N == 8192)]
        assert (big.bound == "compute").all()
    with pytest.raises(SimError, match="no GPU target file matches"):
        validate.gpu_target_for("Radeon 9700")


# ---------------------------------------------------------------- the host, and end-to-end validation

def test_host_stream_overlap_matches_the_task_graph():
    """The host/device recurrence equals the task graph's schedule on random steps, and the two limits
    hold: a host far ahead leaves the device busy (step = device time + the first dispatch), a slow
    host leaves the device idle (step = host time + the last op)."""
    from sim.engine.host import host_device, host_device_graph

    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 25))
        h = rng.exponential(1.0, n) * rng.choice([0.05, 1.0, 8.0])
        d = rng.exponential(1.0, n)
        fixed = float(rng.choice([0.0, 3.0]))
        assert host_device(h, d, fixed).seconds == pytest.approx(host_device_graph(h, d, fixed).run(), rel=1e-12)
    h, d = np.full(10, 1e-3), np.full(10, 1.0)
    assert host_device(h, d).seconds == pytest.approx(10.0 + 1e-3)
    assert host_device(d, h).seconds == pytest.approx(10.0 + 1e-3)
    s = host_device(d, h, fixed_s=2.0, overlap=False)
    assert s.seconds == pytest.approx(12.01) and s.host_bound and s.device_idle_s == pytest.approx(12.0)


def test_host_part_prices_ops_by_kind():
    from sim.targets.parts import Host, HostParams

    hp = HostParams(dispatch_s={"default": 2e-6, "view": 5e-7}, module_s=1e-6, step_s=1e-4, token_s=5e-5)
    h = Host(params=hp)
    assert h.modelled and not Host().modelled
    assert list(h.op_seconds(["view", "gemm", "copy"])) == [5e-7, 2e-6, 2e-6]
    assert h.fixed_seconds(10, decode=False) == pytest.approx(1e-5 + 1e-4)
    assert h.fixed_seconds(10, decode=True) == pytest.approx(1e-5 + 1e-4 + 5e-5)
    with pytest.raises(ValueError, match="negative"):
        HostParams(dispatch_s={"default": -1.0})


def test_a_runtime_host_slows_a_step_by_what_it_does_not_hide():
    """A GPU with an eager host: a batch-1 decode step of a small model is host-bound (the device idles
    between kernels), so the host adds time; the same host on a CPU (no overlap) adds all of it."""
    from sim.config import CONFIGS_DIR
    from sim.run import execute, prepare

    def run(hw):
        raw = {"workload": {"model": "OPT-1.3B", "prompt": 32, "decode_tokens": 4, "dtype": "fp16"},
               "hardware": hw, "run": {"fidelity": "analytic"}}
        return execute(prepare(raw, CONFIGS_DIR / "validate.yaml")).summary

    base = run({"file": "targets/gpu_h100_sxm.yaml"})
    host = {"dispatch_s": {"default": 2e-5}, "overlap": True, "token_s": 1e-4}
    eager = run({"file": "targets/gpu_h100_sxm.yaml", "params": {"host": host}})
    assert "host" not in base and eager["host"]["decode_step"]["host_bound"]
    n_ops = 1072  # OPT-1.3B's traced decode step
    h = eager["host"]["decode_step"]
    assert h["host_s"] >= n_ops * 2e-5 + 1e-4
    assert eager["decode"]["time_per_token_s"] >= h["host_s"] > base["decode"]["time_per_token_s"]
    serial = run({"file": "targets/gpu_h100_sxm.yaml", "params": {"host": {**host, "overlap": False}}})
    assert serial["decode"]["time_per_token_s"] == pytest.approx(
        serial["host"]["decode_step"]["host_s"] + serial["host"]["decode_step"]["device_s"], rel=1e-6)
    # while the device waits for the host its static power still draws: the energy grows by exactly
    # the table's static watts times the idle seconds, phase by phase
    from sim.energy import load_energy

    static_w = load_energy(ROOT / "configs" / "energy" / "gpu_hopper.yaml").static_w
    assert static_w > 0
    idle = {"prefill": eager["host"]["prefill"]["device_idle_s"], "decode": h["device_idle_s"] * 4}
    assert eager["host"]["idle_static_j"] == pytest.approx({k: static_w * v for k, v in idle.items()}, rel=1e-9)
    assert eager["energy_j"] - base["energy_j"] == pytest.approx(static_w * sum(idle.values()), rel=1e-6)
    assert eager["decode"]["energy_j"] - base["decode"]["energy_j"] == pytest.approx(static_w * idle["decode"],
                                                                                     rel=1e-6)


@pytest.mark.slow
def test_e2e_twin_generation_and_host_measurement():
    """The e2e pieces on a twin (toy width, full depth): a generation is timed step by step, and the
    framework's host cost per traced op is measured from it."""
    from sim import validate_e2e
    from workloads import zoo

    spec = zoo.get("OPT-1.3B")
    model, config = validate_e2e.build_model(spec, "bf16", "cpu", twin=True, layers=2)
    assert config.hidden_size == 32 * validate_e2e.TWIN_HEAD_DIM and config.num_hidden_layers == 2
    assert all(bool(p.detach().float().isfinite().all()) for p in model.parameters())
    df = validate_e2e.time_generation(model, config, 8, 3, 2, "cpu")
    assert list(df.phase).count("prefill") == 2 and list(df.phase).count("decode") == 6
    assert (df[df.phase == "decode"].context.unique() == [8, 9, 10]).all() and (df.seconds > 0).all()
    twin = validate_e2e.measure_twin(spec, steps=3, passes=1)
    assert twin["layer_ops"] > 1000 and twin["per_op_s"] > 0 and twin["twin_step_s"] > twin["step_s"] > 0


def test_stream_line_is_a_least_squares_fit():
    """The streaming calibration's line through per-row times: exact on a line, and robust to the two
    kinds of noise a shared machine gives (a negative intercept, a slope that is not positive)."""
    from sim.targets.cpu import stream_line

    x = np.array([2048.0, 4096.0, 8192.0, 16384.0])
    row, bw = stream_line(x, 3e-8 + x / 2e10)
    assert row == pytest.approx(3e-8) and bw == pytest.approx(2e10)
    # one slow sample among four moves the line by a quarter of it, not all of it (two points did)
    y = 3e-8 + x / 2e10
    y[0] *= 1.2
    _, bw2 = stream_line(x, y)
    assert 0.95 < bw2 / 2e10 < 1.05
    row, bw = stream_line(x, x / 1e10 - 5e-8)  # negative intercept: through the origin
    assert row == 0.0 and bw == pytest.approx((x @ x) / (x @ (x / 1e10 - 5e-8)))
    row, bw = stream_line(x, np.full(4, 1e-6))  # flat: no per-byte trend
    assert row == 0.0 and bw == pytest.approx(16384.0 / 1e-6)


def test_one_row_batched_entries_take_their_own_curve():
    """A batch of one-row entries (decode attention, head by head) is priced on the measured one-row
    curve; entries of more rows, and a calibration without that curve, on the cubes'."""
    flat = {"fp32": [(2.0, 5e-6), (2.0 * 1024 * 128, 5e-6)]}
    p = flat_params(batched_flat=flat, llc_bytes=1 << 40)
    one = gemm_time(p, [1], [512], [128], [32], "fp32", b_resident=[True])
    assert one["compute_s"][0] == pytest.approx(32 * 5e-6)
    cubes = gemm_time(flat_params(llc_bytes=1 << 40), [1], [512], [128], [32], "fp32", b_resident=[True])
    assert cubes["compute_s"][0] < one["compute_s"][0]
    two = gemm_time(p, [2], [512], [128], [32], "fp32", b_resident=[True])
    two_cubes = gemm_time(flat_params(llc_bytes=1 << 40), [2], [512], [128], [32], "fp32", b_resident=[True])
    assert two["compute_s"][0] == pytest.approx(two_cubes["compute_s"][0])


def test_fused_vector_ops_cost_their_traffic_only():
    """A compiled runtime fuses the non-GEMM ops into its kernels: on the host CPU each then costs its
    memory traffic, without the call through torch that an eager op pays."""
    p = flat_params(overhead_s=1e-5)
    ops = pd.DataFrame({"kind": ["elementwise", "view"], "dtype": ["fp32", "fp32"], "flops": [1024, 0],
                        "gemm_m": [0, 0], "gemm_n": [0, 0], "gemm_k": [0, 0], "gemm_batch": [1, 1],
                        "bytes_read": [4096, 0], "bytes_written": [4096, 0], "weight_bytes": [0, 0],
                        "kv_bytes_read": [0, 0], "kv_bytes_written": [0, 0]})
    eager = HostCPU(p).cost(ops, Precision(32, 32))
    fused = HostCPU(p.model_copy(update={"fuse_vector_ops": True})).cost(ops, Precision(32, 32))
    assert eager.compute_cycles[0] - fused.compute_cycles[0] == pytest.approx(1e-5 * p.freq_hz, abs=1)
    assert fused.compute_cycles[0] == int(np.ceil(8192 / p.cache_bytes_per_s * p.freq_hz))
    assert eager.compute_cycles[1] == fused.compute_cycles[1] == 0


@pytest.mark.slow
def test_e2e_compiled_twin_and_a_model_that_does_not_compile():
    """The compiled runtime's host on a shallow twin: a few graphs per twin (one per input shape,
    compiled in the warm-up), not one per decode step; a forward with graph breaks is a one-line
    error, not a piecewise run that recompiles at every step.  (Whether compiled ops cost less than
    eager ones on this machine is a measurement, not a property: benchmarks/hf_generate_host.py.)"""
    from torch._dynamo.utils import counters

    from sim import validate_e2e
    from workloads import zoo

    spec = zoo.get("Llama-2-7B")
    counters.clear()
    steps = 6
    comp = validate_e2e.measure_twin(spec, steps=steps, passes=1, runtime="compiled", layers=2)
    assert comp["runtime"] == "compiled" and comp["twin_layers"] == 2 and comp["layer_ops"] > 100
    assert comp["per_op_s"] > 0 and comp["step_s"] > 0
    # two twins (the layers' and the zero-layer one), each run for 2 warm-ups + `steps` decode steps
    graphs = counters["stats"]["unique_graphs"]
    assert 2 <= graphs <= 2 * 3 < 2 * (steps + 2)
    with pytest.raises(SimError, match="does not compile as one graph"):
        validate_e2e.measure_twin(zoo.get("OPT-1.3B"), steps=2, passes=1, runtime="compiled", layers=1)


def test_e2e_bad_input():
    assert main(["validate", "--device", "cpu", "--e2e"]) == 2  # no --model
    assert main(["validate", "--device", "cpu", "--e2e", "--model", "nope"]) == 2
    assert main(["validate", "--device", "cpu", "--e2e", "--model", "Lamarr-rich"]) == 2
    assert main(["validate", "--device", "cpu", "--e2e", "--model", "OPT-1.3B", "--runtime", "jit"]) == 2
    assert main(["validate", "--device", "cpu", "--e2e", "--model", "OPT-1.3B", "--prompt", "0"]) == 2
    assert main(["validate", "--device", "cpu", "--model", "OPT-1.3B"]) == 2  # --model without --e2e


@pytest.mark.parametrize("model", ["OPT-1.3B", "Llama-2-7B"])
def test_e2e_decode_step_attends_to_the_static_cache(model):
    """What e2e times is real decoding: a step on the static cache gives the logits a full forward
    over the whole sequence gives (fp32 twin)."""
    import torch
    from transformers import StaticCache

    from sim import validate_e2e
    from workloads import zoo

    m, c = validate_e2e.build_model(zoo.get(model), "fp32", "cpu", twin=True, layers=2)
    ids = torch.randint(0, validate_e2e.TWIN_VOCAB, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cache = StaticCache(config=c, max_cache_len=10)
        m(input_ids=ids[:, :5], cache=cache, use_cache=True, cache_position=torch.arange(5))
        step = m(input_ids=ids[:, 5:], cache=cache, use_cache=True, cache_position=torch.tensor([5])).logits[0, -1]
        full = m(input_ids=ids, use_cache=False).logits[0, -1]
    assert torch.allclose(step, full, atol=1e-6 * float(full.abs().max()) + 1e-9)


def test_repredict_a_committed_set(tmp_path):
    """`sim validate --from DIR` predicts a committed set again, measuring nothing: the CPU set with
    its own calibration gives the MAPE recorded with it (the CPU model has not moved since); a
    folder without measurements is a one-line error."""
    folder = ROOT / "results" / "validation" / "cpu"
    recorded = json.loads((folder / "summary.json").read_text())
    assert main(["validate", "--from", str(folder), "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "summary.json").read_text())
    assert again["mape"] == pytest.approx(recorded["mape"], rel=1e-9)
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "validation.png").is_file()
    assert main(["validate", "--from", str(tmp_path / "nothing")]) == 2
    assert main(["validate", "--from", str(folder), "--device", "cpu"]) == 2
    assert main(["validate"]) == 2
