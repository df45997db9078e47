"""``sim validate``: real kernel runs on the local device against the matching target's predictions.

The shape set (``--shapes``): the GEMMs of zoo traces (Llama-2-7B prefill of 128 tokens and decode at
context 128, all-MiniLM-L6-v2 on 128 tokens; linear layers and attention's batched matmuls), square
GEMMs, and flat GEMMs (M of 1 to 16 against LLM-sized weights, as in decode).  ``smoke`` is a handful
of small shapes for tests; a CSV file with columns M, N, K (and batch, set, name) names any other set.

Each shape runs with torch on the device: warm-up calls, then repeated samples, the median kept
(CUDA events on a GPU, ``time.perf_counter`` around enough back-to-back calls on a CPU).  B is held
as ``nn.Linear`` holds a weight (the transpose of a row-major [N, K]), the layout models run.  On a
GPU the time compared is the device's: the calls are captured in a CUDA graph and replayed (eager
calls back to back are timed too, ``measured_eager_s``: for small GEMMs that is the host's launch
rate through PyTorch, tens of microseconds, which the kernel model does not claim).  Each call takes
its own copy of the operands, cycling through enough copies to exceed twice the last-level cache (a
GPU's L2), so calls start cold as weights streamed once per token do; the prediction reads them
from HBM or DRAM (on a CPU within a memory budget, ``CPU_COPIES`` and ``CPU_COPY_BYTES``: where the
copies still fit the cache, the prediction finds B there).
``gpu`` is the default set plus longer prompts and contexts and Llama-2-13B (a GPU times them in
seconds).  Results:
``measured.csv`` (with ``machine.json``, a description of the machine and its libraries), then the
prediction of the matching target for each shape (``predictions.csv``: errors, and on a GPU the tile,
split-K and waves chosen), ``summary.json`` (MAPE overall and per set, the worst shapes) and
``validation.png`` (predicted vs measured).

CPU: the host-CPU target (``sim/targets/cpu.py``) is first calibrated by its micro-benchmarks
(``calibration.yaml``), on shapes that are not in the validation set.  GPU: the target file whose
name matches the device (``configs/targets/gpu_*.yaml``).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import SimError

SETS = ("smoke", "default", "zoo", "square", "flat", "gpu")
SQUARES = [128, 256, 384, 512, 768, 2048]  # 1024 and 1536 are calibration shapes on the CPU
FLAT_M = [1, 2, 4, 8, 16]
FLAT_NK = [(4096, 4096), (11008, 4096), (4096, 11008)]
#: a CPU measurement cycles through at most this many operand copies, of at most this many bytes in all
CPU_COPIES, CPU_COPY_BYTES = 256, 1 << 30
#: the CPU set is measured in this many passes (shuffled orders): their mean is compared, their
#: spread reported as the machine's repeatability
CPU_PASSES = 2
GPU_FILES = {"H100": "targets/gpu_h100_sxm.yaml", "H200": "targets/gpu_h200.yaml",
             "A100": "targets/gpu_a100_sxm_80gb.yaml"}


ZOO_STEPS = (("Llama-2-7B", "prefill", 128, 0), ("Llama-2-7B", "decode", 1, 128),
             ("all-MiniLM-L6-v2", "prefill", 128, 0))
# a GPU runs larger shapes in the same few minutes: longer prompts and contexts, a 13B model
GPU_STEPS = ZOO_STEPS + (("Llama-2-7B", "prefill", 2048, 0), ("Llama-2-7B", "decode", 1, 2048),
                         ("Llama-2-13B", "prefill", 512, 0), ("Llama-2-13B", "decode", 1, 512))


def _zoo_shapes(steps=ZOO_STEPS) -> list[dict]:
    from workloads import api

    rows = []
    for model, phase, seq, ctx in steps:
        df = api.trace(model, phase, 1, seq, ctx, "fp32" if model.startswith("all-") else "fp16")
        mm = df[df.kind.isin(["gemm", "attn_matmul"])]
        for r in mm.itertuples():
            rows.append({"set": "zoo", "name": f"{model} {phase} {r.role}", "M": int(r.gemm_m), "N": int(r.gemm_n),
                         "K": int(r.gemm_k), "batch": int(r.gemm_batch)})
    return rows


def shape_set(name: str) -> pd.DataFrame:
    """The shapes of a named set (see the module docstring) or of a CSV file; duplicates dropped."""
    rows: list[dict] = []
    if name not in SETS:
        p = Path(name)
        if not p.exists():
            raise SimError(f"--shapes: {name!r} is neither a shape set ({', '.join(SETS)}) nor a CSV file")
        df = pd.read_csv(p)
        missing = {"M", "N", "K"} - set(df.columns)
        if missing:
            raise SimError(f"{p}: missing column(s) {', '.join(sorted(missing))} (need M, N, K; batch optional)")
        df = df.assign(batch=df.get("batch", 1), set=df.get("set", "file"),
                       name=df.get("name", [f"{m}x{n}x{k}" for m, n, k in zip(df.M, df.N, df.K)]))
        if (df[["M", "N", "K", "batch"]] <= 0).any().any():
            raise SimError(f"{p}: M, N, K and batch must be positive")
        rows = df[["set", "name", "M", "N", "K", "batch"]].to_dict("records")
    if name == "smoke":
        rows = [{"set": "smoke", "name": f"{m}x{n}x{k}x{b}", "M": m, "N": n, "K": k, "batch": b}
                for m, n, k, b in ((64, 256, 256, 1), (256, 256, 256, 1), (1, 2048, 2048, 1), (8, 2048, 2048, 1),
                                   (128, 128, 64, 8))]
    if name in ("default", "zoo"):
        rows += _zoo_shapes()
    if name == "gpu":
        rows += _zoo_shapes(GPU_STEPS)
    if name in ("default", "square", "gpu"):
        sizes = SQUARES + ([1024, 4096, 8192] if name == "gpu" else [])
        rows += [{"set": "square", "name": f"{s}^3", "M": s, "N": s, "K": s, "batch": 1} for s in sizes]
    if name in ("default", "flat", "gpu"):
        ms = FLAT_M + ([32, 64] if name == "gpu" else [])
        rows += [{"set": "flat", "name": f"M={m} {n}x{k}", "M": m, "N": n, "K": k, "batch": 1}
                 for m in ms for n, k in FLAT_NK]
    df = pd.DataFrame(rows, columns=["set", "name", "M", "N", "K", "batch"])
    return df.drop_duplicates(subset=["M", "N", "K", "batch"]).reset_index(drop=True)


# ---------------------------------------------------------------- timing

def _time_cuda(fn, samples: int, warmup: int) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    once = max(start.elapsed_time(end) * 1e-3, 1e-6)
    reps = max(1, int(2e-3 / once))
    out = []
    for _ in range(samples):
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) * 1e-3 / reps)
    return float(np.median(out))


def _time_cuda_graph(fn, calls: int, samples: int) -> float:
    """Median device seconds of one call of ``fn`` with the host out of the way: ``calls`` calls
    captured in one CUDA graph, the graph replayed back to back (enough replays per sample to last
    >= 2 ms), timed with CUDA events.  Eager timing of a small GEMM measures the host's launch rate
    (tens of microseconds per call through PyTorch), not the GPU."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    t = _time_cuda(graph.replay, samples, warmup=2) / calls
    del graph
    return t


def machine(device: str) -> dict:
    import torch

    info = {"device": device, "host": platform.node(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(name=torch.cuda.get_device_name(0), sms=props.multi_processor_count,
                    memory_bytes=props.total_memory, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version(),
                    capability=".".join(map(str, torch.cuda.get_device_capability())))
        try:
            import subprocess

            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=False).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["driver"] = "unknown"
    else:
        from sim.targets.cpu import _cpu_model

        info.update(name=_cpu_model(), threads=torch.get_num_threads(), machine=platform.machine(),
                    blas=(torch.__config__.show().split("BLAS_INFO=")[1].split(",")[0]
                          if "BLAS_INFO=" in torch.__config__.show() else "unknown"))
    return info


def measure(shapes: pd.DataFrame, device: str, dtype: str, samples: int = 7, progress=None,
            passes: int = 1) -> pd.DataFrame:
    """Median seconds of each shape run with torch on ``device`` (a column added to ``shapes``).

    On a GPU ``measured_s`` is the device time (calls replayed from a CUDA graph) and
    ``measured_eager_s`` the time per call of eager PyTorch calls back to back (which, for small
    GEMMs, is the host's launch rate).  With ``passes`` > 1 the whole set is measured that many
    times, each pass in its own shuffled order: ``measured_s`` is their mean, ``measured_pass<i>_s``
    each pass and ``retest`` the spread of the passes over their mean, the machine's own
    repeatability (a shared VM's speed moves from minute to minute)."""
    if passes > 1:
        runs = [measure(shapes, device, dtype, samples, progress, passes=1) for _ in range(passes)]
        df = runs[0].copy()
        t = np.stack([r["measured_s"].to_numpy() for r in runs])
        for i in range(passes):
            df[f"measured_pass{i + 1}_s"] = t[i]
        df["measured_s"] = t.mean(axis=0)
        df["measured_tflops"] = 2.0 * df.M * df.N * df.K * df.batch / df.measured_s / 1e12
        df["retest"] = (t.max(axis=0) - t.min(axis=0)) / df["measured_s"]
        return df
    import torch

    from sim.targets.cpu import DTYPE_BYTES, _llc_bytes, gemm_runner, time_call

    step = progress or (lambda i, n, msg: None)
    l2_bytes = 0
    if device == "cuda":
        l2_bytes = int(getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 50 * 2**20))
    out = np.zeros(len(shapes))
    eager = np.zeros(len(shapes))
    copy_count = np.ones(len(shapes), dtype=np.int64)
    llc = _llc_bytes()
    # in a shuffled order, so that a slow spell of a shared machine does not fall on one set (seeded
    # by the call: the passes of one validation take different orders)
    measure.calls = getattr(measure, "calls", 0) + 1
    order = np.random.default_rng(measure.calls).permutation(len(shapes))
    for i, pos in enumerate(order):
        r = shapes.iloc[pos]
        step(i, len(shapes), r["name"])
        el = DTYPE_BYTES[dtype]
        # enough operand copies to exceed twice the last-level cache (a GPU's L2), so every call starts
        # cold, as a weight streamed once per token does (on a CPU within a memory budget: a small
        # GEMM's copies may still fit the cache, and the prediction is told so by ``copies``)
        M, N, K, B = (int(r[c]) for c in ("M", "N", "K", "batch"))
        one = (M * K + K * N) * B * el
        copies = int(min(64, -(-l2_bytes * 2 // one)) if device == "cuda"
                     else max(1, min(CPU_COPIES, -(-llc * 2 // one), CPU_COPY_BYTES // one)))
        copy_count[pos] = copies
        fn = gemm_runner(M, N, K, B, dtype, device, copies=copies)
        if device == "cuda":
            eager[pos] = _time_cuda(fn, samples, warmup=3)
            out[pos] = _time_cuda_graph(fn, max(copies, 8), samples)
        else:
            out[pos] = time_call(fn, min_sample_s=5e-3, samples=samples, warmup=2)
        del fn
    if device == "cuda":
        torch.cuda.empty_cache()
    step(len(shapes), len(shapes), "done")
    df = shapes.assign(dtype=dtype, copies=copy_count, measured_s=out,
                       measured_tflops=2.0 * shapes.M * shapes.N * shapes.K * shapes.batch / out / 1e12)
    if device == "cuda":  # measured_s: device time (graph replay); eager: one PyTorch call after another
        df["measured_eager_s"] = eager
    return df


# ---------------------------------------------------------------- prediction

def gpu_file_for(name: str) -> str:
    """The GPU target file whose key matches a CUDA device name ('NVIDIA H100 80GB HBM3' -> H100)."""
    for key, f in GPU_FILES.items():
        if key in name.upper():
            return f
    raise SimError(f"no GPU target file matches the device {name!r} (known: {', '.join(GPU_FILES)})")


def gpu_target_for(name: str):
    """The GPU target of a CUDA device name (:func:`gpu_file_for`)."""
    from sim.config import CONFIGS_DIR, Hardware
    from sim.targets import build

    target, _, _ = build(Hardware(file=gpu_file_for(name)), CONFIGS_DIR / "validate.yaml")
    return target


def check_device(device: str) -> None:
    """A SimError unless ``device`` is cpu, or cuda with a CUDA device present."""
    import torch

    if device not in ("cpu", "cuda"):
        raise SimError(f"--device: expected cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SimError("--device cuda: torch sees no CUDA device on this machine")


def device_slug(info: dict) -> str:
    """The folder name of a device's results under results/validation/ (cpu, or the GPU's name)."""
    if info["device"] == "cpu":
        return "cpu"
    return "".join(c if c.isalnum() else "-" for c in info["name"]).strip("-").lower()


def predict(measured: pd.DataFrame, device: str, target) -> pd.DataFrame:
    """Predicted seconds per shape on ``target`` (host_cpu or gpu) and the errors."""
    df = measured.copy()
    M, N, K, B = (df[c].to_numpy() for c in ("M", "N", "K", "batch"))
    dtype = str(df["dtype"].iloc[0])
    from sim.targets.cpu import DTYPE_BYTES

    el = DTYPE_BYTES[dtype]
    if device == "cpu":
        from sim.targets.cpu import gemm_time

        copies = df["copies"].to_numpy() if "copies" in df else np.ones(len(df))
        # B stays in the cache only if every copy the timed loop cycles through fits it
        resident = copies * (M * K + K * N + M * N) * B * el <= target.params.llc_bytes
        g = gemm_time(target.params, M, N, K, B, dtype, b_resident=resident)
        df["predicted_s"] = g["time_s"]
        df["bound"] = np.where(g["mem_s"] > g["compute_s"], "memory", "compute")
    else:
        from sim.targets.gpu import gemm_plan

        key = {"fp16": "fp16", "bf16": "bf16", "fp32": "tf32"}[dtype]
        cold = np.zeros(len(df), bool)  # the measurement cycles through operand copies: every call is cold
        plan = gemm_plan(target.params, M, N, K, B, el, el, el, target.rate(key), a_resident=cold, b_resident=cold,
                         c_resident=cold)
        df["predicted_s"] = plan["time_s"]
        df["bound"] = np.where(plan["hbm_s"] > plan["compute_s"], "memory", "compute")
        for c in ("bm", "bn", "bk", "stages", "split", "cluster", "waves"):
            df[c] = plan[c]
    df["error"] = (df["predicted_s"] - df["measured_s"]) / df["measured_s"]
    return df


def summarize(pred: pd.DataFrame, info: dict) -> dict:
    ape = pred["error"].abs()
    worst = pred.assign(ape=ape).sort_values("ape", ascending=False).head(8)
    return {
        "device": info.get("device"), "name": info.get("name"), "shapes": len(pred),
        "mape": float(ape.mean()), "median_ape": float(ape.median()), "max_ape": float(ape.max()),
        "mape_by_set": {k: float(v) for k, v in pred.assign(ape=ape).groupby("set")["ape"].mean().items()},
        "signed_mean_error": float(pred["error"].mean()),
        **({"retest_mean": float(pred["retest"].mean())} if "retest" in pred else {}),
        "worst": [{"name": r.name, "M": int(r.M), "N": int(r.N), "K": int(r.K), "batch": int(r.batch),
                   "measured_ms": r.measured_s * 1e3, "predicted_ms": r.predicted_s * 1e3, "error": r.error}
                  for r in worst.itertuples()],
    }


def plot(pred: pd.DataFrame, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5.5))
    for s, g in pred.groupby("set"):
        ax.scatter(g.measured_s * 1e3, g.predicted_s * 1e3, s=18, label=s, zorder=3)
    lo = min(pred.measured_s.min(), pred.predicted_s.min()) * 1e3 * 0.8
    hi = max(pred.measured_s.max(), pred.predicted_s.max()) * 1e3 * 1.25
    xs = np.array([lo, hi])
    ax.fill_between(xs, xs * 0.85, xs * 1.15, color="0.88", label="±15%", zorder=0)
    ax.plot(xs, xs, "k-", lw=0.8, zorder=1)
    ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)",
           title=f"{summary['name']}: MAPE {summary['mape'] * 100:.1f}% over {summary['shapes']} GEMMs")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(device: str, shapes: str = "default", out: str | Path | None = None, dtype: str | None = None,
        samples: int = 7, quick: bool = False, progress=None) -> dict:
    """The whole validation (see the module docstring); returns the summary."""
    import yaml

    check_device(device)
    dtype = dtype or ("bf16" if device == "cpu" else "fp16")
    if dtype not in ("fp32", "bf16", "fp16"):
        raise SimError(f"--dtype: expected fp32, bf16 or fp16, got {dtype!r}")
    table = shape_set(shapes)
    info = machine(device)
    outdir = Path(out) if out else Path("results/validation") / device_slug(info)
    outdir.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda msg: None)
    if device == "cpu":
        from sim.targets.cpu import HostCPU
        from sim.targets.cpu import measure as calibrate

        say("calibrating the host-CPU target (micro-benchmarks)")
        params = calibrate(dtypes=(dtype,), quick=quick, progress=say)
        (outdir / "calibration.yaml").write_text(yaml.safe_dump(json.loads(params.model_dump_json()), sort_keys=False))
        target = HostCPU(params)
    else:
        target = gpu_target_for(info["name"])
    t0 = time.perf_counter()
    meas = measure(table, device, dtype, samples, progress=lambda i, n, msg: say(f"measuring {i}/{n}: {msg}"),
                   passes=CPU_PASSES if device == "cpu" else 1)
    info["measure_wall_s"] = round(time.perf_counter() - t0, 1)
    meas.to_csv(outdir / "measured.csv", index=False)
    (outdir / "machine.json").write_text(json.dumps(info, indent=2) + "\n")
    return _predict_and_write(meas, target, info, outdir)


def repredict(folder: str | Path, out: str | Path | None = None) -> dict:
    """Predict a committed measurement set again with the model as it is now, measuring nothing: the
    folder's measured.csv and machine.json, and on a CPU its calibration.yaml (the machine's
    micro-benchmarks, taken with the measurements).  Writes predictions.csv, summary.json and
    validation.png to ``out`` (default: the folder itself); returns the summary."""
    import yaml

    folder = Path(folder)
    missing = [f for f in ("measured.csv", "machine.json") if not (folder / f).is_file()]
    if missing:
        raise SimError(f"--from {folder}: not a validation folder (no {', '.join(missing)})")
    info = json.loads((folder / "machine.json").read_text())
    meas = pd.read_csv(folder / "measured.csv")
    if info.get("device") == "cpu":
        from sim.targets.cpu import HostCPU, HostCPUParams

        cal = folder / "calibration.yaml"
        if not cal.is_file():
            raise SimError(f"--from {folder}: a CPU set needs the calibration.yaml taken with it")
        target = HostCPU(HostCPUParams.model_validate(yaml.safe_load(cal.read_text())))
    else:
        target = gpu_target_for(info["name"])
    outdir = Path(out) if out else folder
    outdir.mkdir(parents=True, exist_ok=True)
    return _predict_and_write(meas, target, info, outdir)


def _predict_and_write(meas: pd.DataFrame, target, info: dict, outdir: Path) -> dict:
    """Predict a measured set (of ``info``'s device) on ``target``; write predictions.csv,
    summary.json and validation.png to ``outdir``; return the summary (with ``out``)."""
    pred = predict(meas, info["device"], target)
    pred.to_csv(outdir / "predictions.csv", index=False)
    summary = summarize(pred, info)
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(pred, summary, outdir / "validation.png")
    summary["out"] = str(outdir)
    return summary


def print_summary(summary: dict, console=None) -> None:
    from sim.tables import console as make_console
    from sim.tables import rich_table

    console = console or make_console()
    rows = [[f"{w['name']} ({w['M']}x{w['N']}x{w['K']}x{w['batch']})", f"{w['measured_ms']:.4g}",
             f"{w['predicted_ms']:.4g}", f"{w['error'] * 100:+.1f}%"] for w in summary["worst"]]
    cols = ["shape", "measured ms", "predicted ms", "error"]
    console.print(rich_table(f"validation on {summary['name']} ({summary['shapes']} GEMMs)", cols, rows,
                             right=set(cols[1:])), crop=False)
    by_set = ", ".join(f"{k} {v * 100:.1f}%" for k, v in summary["mape_by_set"].items())
    console.print(f"MAPE {summary['mape'] * 100:.1f}% (median {summary['median_ape'] * 100:.1f}%, "
                  f"max {summary['max_ape'] * 100:.1f}%; by set: {by_set}) -> {summary['out']}")
    if "retest_mean" in summary:
        console.print(f"this machine's repeatability: the two measurement passes differ by "
                      f"{summary['retest_mean'] * 100:.1f}% of a shape's time on average")


__all__ = ["SETS", "check_device", "device_slug", "gpu_file_for", "gpu_target_for", "machine", "measure", "plot", "predict", "repredict", "run", "shape_set", "summarize"]
