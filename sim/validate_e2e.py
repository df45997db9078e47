"""``sim validate --e2e``: a whole model's prefill and decode steps, timed on the local device, against
the matching target's prediction with the host (the runtime) as its own stream.

The model is the zoo entry built by ``transformers`` with random weights (a random block tiled over
every parameter: the values do not change the time of dense kernels) and a static KV cache, as
Hugging Face's generate runs it at batch 1 (prefill: logits of the last position only).  Timed on
the device: ``repeats`` generations, each a prefill of ``prompt`` tokens and ``decode_tokens``
decode steps (a step: the forward of one token, the arg-max of its logits and the next position: a
generate loop's work), after a warm-up generation; the medians are kept.

The prediction is a ``sim run`` of the same workload on:

- cpu: the host-CPU target calibrated on this machine (``calibration.yaml``: GEMM, memory and
  dispatch micro-benchmarks, :func:`sim.targets.cpu.measure`), with the eager runtime's host
  (:func:`sim.targets.cpu.measure_host`) and the framework's own per-op and per-step cost measured on
  the model's *twin*: the same architecture at toy width (hidden 4 per head, a 512-token
  vocabulary), whose device work is negligible, so its step time is the host's
  (:func:`measure_twin`); host and kernels run back to back on the CPU's threads;
- cuda: the GPU target file of the device for the runtime (``gpu_*_eager.yaml``), its cited host
  figures replaced by the twin's, measured on the GPU (its kernels are a few microseconds, so its
  step is the host's dispatch); the host's dispatch overlaps the GPU's kernels.

``--runtime compiled`` compiles the forward with ``torch.compile`` as one graph per shape (CUDA
graphs on a GPU, inductor's fused C++ kernels on a CPU; :func:`compile_model`; compilation happens
in the warm-up generation, untimed), measures the twin compiled the same way (a shallow twin,
``TWIN_COMPILED_LAYERS``), and on a CPU charges the fused non-GEMM ops their traffic only.  A model
whose forward does not compile as one graph (OPT on transformers 5.x) is an error.

On a CPU the machine's speed is read by two short probes (:func:`sim.targets.cpu.probe`: a cold
flat GEMM's streaming rate, a 1024^3 GEMM's rate) after the calibration and around every timed
generation; their range (``probes.csv``, ``summary.json``: ``machine_speed``) is the yardstick for
the errors: a shared VM's speed moves by tens of percent from minute to minute.

Results (``--out``, default ``results/validation/<device>/e2e-<model>``, ``e2e-compiled-<model>`` for
the compiled runtime): ``measured.csv`` (every
timed step), ``predictions.csv`` (per phase: measured and predicted seconds, the error, the host's
and the device's parts), ``probes.csv`` (cpu), ``summary.json`` (per-phase relative error), ``machine.json``,
``calibration.yaml`` and ``e2e.png`` (decode step times against the context, measured and predicted).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from models.errors import SimError

RUNTIMES = ("eager", "compiled")
#: the twin's width: hidden size = heads x TWIN_HEAD_DIM, MLP width TWIN_FFN, vocabulary TWIN_VOCAB
TWIN_HEAD_DIM, TWIN_FFN, TWIN_VOCAB = 4, 128, 512
#: the compiled runtime's twin depth (compiling a full-depth twin costs minutes; per-layer cost is
#: the same at any depth)
TWIN_COMPILED_LAYERS = 2


def _hf_config(spec, twin: bool = False, layers: int | None = None):
    import transformers

    cfg = dict(spec.config)
    if twin:
        heads = int(cfg.get("num_attention_heads", 32))
        for key, val in (("hidden_size", heads * TWIN_HEAD_DIM), ("word_embed_proj_dim", heads * TWIN_HEAD_DIM),
                         ("ffn_dim", TWIN_FFN), ("intermediate_size", TWIN_FFN), ("vocab_size", TWIN_VOCAB)):
            if key in cfg:
                cfg[key] = val
        if "head_dim" in cfg:
            cfg["head_dim"] = TWIN_HEAD_DIM
    if layers is not None:
        cfg["num_hidden_layers"] = layers
    cls = getattr(transformers, spec.config_class)
    if twin:  # special tokens of the full vocabulary (Phi-3's padding id 32000) point past the twin's
        defaults = cls()
        for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            v = cfg.get(key, getattr(defaults, key, None))
            if isinstance(v, int) and v >= TWIN_VOCAB:
                cfg[key] = TWIN_VOCAB - 1
    config = cls(**cfg)
    config._attn_implementation = "sdpa"
    return config


def build_model(spec, dtype: str, device: str, twin: bool = False, layers: int | None = None):
    """The zoo model (a transformers causal LM) with random weights on ``device``; returns (model, config).

    Weights are allocated without initialization, then filled from one random block (seeded), so a
    7B model is ready in seconds instead of the minutes a full random initialization takes."""
    import torch
    import transformers
    from transformers.initialization import no_init_weights

    from workloads.build import torch_dtype

    if spec.builder is not None or not spec.config_class:
        raise SimError(f"--e2e: {spec.name!r} is not a transformers causal LM (e2e validation runs those)")
    config = _hf_config(spec, twin, layers)
    td = torch_dtype(dtype)
    old = torch.get_default_dtype()
    torch.set_default_dtype(td)
    try:
        with no_init_weights(), torch.device(device):
            model = getattr(transformers, spec.model_class)(config)
    finally:
        torch.set_default_dtype(old)
    g = torch.Generator(device="cpu").manual_seed(0)
    block = (torch.randn(1 << 20, generator=g) * 0.02).to(device=device, dtype=td)
    with torch.no_grad():
        for p in model.parameters():
            flat = p.view(-1)
            for i in range(0, flat.numel(), block.numel()):
                n = min(block.numel(), flat.numel() - i)
                flat[i:i + n].copy_(block[:n])
    return model.eval(), config


def compile_model(model, device: str, name: str = "the model"):
    """``model`` with its forward compiled as the compiled runtime runs it: ``torch.compile`` as one
    graph per input shape (prefill, decode), CUDA graphs on a GPU (mode reduce-overhead), inductor's
    fused kernels on a CPU.  A forward that does not compile as one graph is an error: piecewise
    compilation with recompiles at every step is not the runtime being validated."""
    import torch

    mode = "reduce-overhead" if device == "cuda" else "default"
    forward = torch.compile(model.forward, fullgraph=True, dynamic=False, mode=mode)

    def checked(*args, **kwargs):
        try:
            return forward(*args, **kwargs)
        except Exception as e:  # dynamo's graph-break and unsupported errors have no common base
            if "torch._dynamo" not in type(e).__module__ and "torch._inductor" not in type(e).__module__:
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SimError(f"--runtime compiled: {name}'s forward does not compile as one graph here "
                           f"({type(e).__name__}: {first[:200]})") from None

    model.forward = checked
    return model


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_generation(model, config, prompt: int, decode_tokens: int, repeats: int, device: str,
                    progress=None, between=None, warmups: int = 1) -> pd.DataFrame:
    """Every timed step of ``repeats`` generations (after ``warmups`` untimed ones): phase, repeat,
    step, context, seconds.  ``between``, if given, is called before each timed generation and after
    the last.  A compiled model needs two warm-ups: its first prefill meets a cache not yet
    allocated, the next ones a used cache, and each state compiles a graph of its own."""
    import torch
    from transformers import StaticCache

    say = progress or (lambda msg: None)
    g = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (1, prompt), generator=g).to(device)
    rows = []
    with torch.inference_mode():
        cache = StaticCache(config=config, max_cache_len=prompt + decode_tokens + 1)
        for rep in range(-warmups, repeats):
            if between is not None and rep >= 0:
                between()
            cache.reset()
            _sync(device)
            t0 = time.perf_counter()
            out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1,
                        cache_position=torch.arange(prompt, device=device))
            nxt = out.logits[:, -1:].argmax(-1)
            _sync(device)
            t = time.perf_counter() - t0
            if rep >= 0:
                rows.append({"phase": "prefill", "repeat": rep, "step": 0, "context": 0, "seconds": t})
            for k in range(decode_tokens):
                pos = prompt + k
                t0 = time.perf_counter()
                out = model(input_ids=nxt, cache=cache, use_cache=True,
                            cache_position=torch.tensor([pos], device=device))
                nxt = out.logits[:, -1:].argmax(-1)
                _sync(device)
                t = time.perf_counter() - t0
                if rep >= 0:
                    rows.append({"phase": "decode", "repeat": rep, "step": k, "context": pos, "seconds": t})
            say(f"generation {rep + 1}/{repeats} timed" if rep >= 0 else f"warm-up {rep + warmups + 1} done")
    if between is not None:
        between()
    return pd.DataFrame(rows)


def measure_twin(spec, dtype: str = "bf16", steps: int = 30, passes: int = 3, device: str = "cpu",
                 runtime: str = "eager", layers: int | None = None) -> dict:
    """The framework's host cost for ``spec``'s architecture on this machine, from its twin (toy width):
    the median decode step of a twin of ``layers`` layers (default: the model's depth) and of a
    zero-layer twin, both run in ``runtime``.  ``per_op_s``: the layers' host time per traced op of
    the decode step (the twin's layers' ops); ``step_s``: the zero-layer twin's step (embedding,
    final norm, head, the framework's Python around the layers).  The compiled runtime compiles
    every twin once per shape, so it is measured on a shallow twin (a few layers)."""
    from workloads import api

    out = {}
    full_depth = int(_hf_config(spec).num_hidden_layers)
    depth = full_depth if layers is None else int(layers)
    for name, n in (("full", depth), ("zero", 0)):
        model, config = build_model(spec, dtype, device, twin=True, layers=n)
        if runtime == "compiled":
            compile_model(model, device, f"{spec.name}'s twin")
        best = float("inf")
        for _ in range(passes):
            df = time_generation(model, config, 16, steps, 1, device, warmups=2 if runtime == "compiled" else 1)
            best = min(best, float(df[df.phase == "decode"].seconds.median()))
        out[name] = best
    tpl = api.decode_template(spec.name, 1, 1, dtype)
    in_layers = int((tpl.base["layer"] >= 0).sum()) * depth // max(1, full_depth)
    return {"runtime": runtime, "twin_layers": depth, "twin_step_s": out["full"], "twin_zero_layer_s": out["zero"],
            "layer_ops": in_layers, "per_op_s": max(0.0, out["full"] - out["zero"]) / max(1, in_layers),
            "step_s": out["zero"]}


def _predict(target_raw: dict, model: str, prompt: int, decode_tokens: int, dtype: str) -> dict:
    """A ``sim run`` of the workload on a target given as a ``hardware`` mapping; its summary."""
    from sim.config import CONFIGS_DIR
    from sim.run import execute, prepare

    raw = {"name": f"e2e {model}", "workload": {"model": model, "batch": 1, "prompt": prompt,
                                                  "decode_tokens": decode_tokens, "dtype": dtype},
           "hardware": target_raw, "run": {"fidelity": "analytic"}}
    return execute(prepare(raw, CONFIGS_DIR / "validate.yaml")).summary


def run(device: str, model: str, prompt: int = 128, decode_tokens: int = 16, runtime: str = "eager",
        dtype: str | None = None, out: str | Path | None = None, repeats: int = 3, quick: bool = False,
        progress=None) -> dict:
    """The whole end-to-end validation (see the module docstring); returns the summary."""
    import yaml

    from sim.validate import check_device, device_slug, gpu_file_for, machine
    from workloads import zoo

    say = progress or (lambda msg: None)
    check_device(device)
    if runtime not in RUNTIMES:
        raise SimError(f"--runtime: expected {' or '.join(RUNTIMES)}, got {runtime!r}")
    for name, v, lo in (("--prompt", prompt, 1), ("--decode-tokens", decode_tokens, 1), ("--repeats", repeats, 1)):
        if not isinstance(v, int) or v < lo:
            raise SimError(f"{name}: expected an integer >= {lo}, got {v!r}")
    dtype = dtype or ("bf16" if device == "cpu" else "fp16")
    spec = zoo.get(model)
    if spec.builder is not None or not spec.config_class:
        raise SimError(f"--e2e: {model!r} is not a transformers causal LM (e2e validation runs those)")
    info = machine(device)
    folder = f"e2e-{model}" if runtime == "eager" else f"e2e-{runtime}-{model}"
    outdir = Path(out) if out else Path("results/validation") / device_slug(info) / folder
    outdir.mkdir(parents=True, exist_ok=True)

    # ---- the target: calibrated here (cpu) or the device's file with the runtime's host (cuda)
    if device == "cpu":
        from sim.targets.cpu import measure as calibrate
        from sim.targets.cpu import measure_host, probe

        say("calibrating the host-CPU target (micro-benchmarks)")
        params = calibrate(dtypes=(dtype,), quick=quick, progress=say)
        probes = [dict(probe(dtype, params.llc_bytes), when="calibration")]
        say(f"measuring the host: dispatch micro-benchmarks and {model}'s twin ({runtime})")
        host = measure_host()
        twin = measure_twin(spec, dtype, steps=10 if quick else 30, passes=2 if quick else 3, runtime=runtime,
                            layers=TWIN_COMPILED_LAYERS if runtime == "compiled" else None)
        micro = host
        # eager: the twin's ops are real calls on tiny tensors, each including the call into the
        # library that the device side charges (overhead_s), so the host's share is the rest;
        # compiled: the non-GEMM ops are fused into inductor's kernels (the device charges them their
        # traffic only) and the twin's step is every kernel call of the compiled graph
        per_op = twin["per_op_s"] if runtime == "compiled" else max(0.0, twin["per_op_s"] - params.overhead_s)
        host = host.model_copy(update={"runtime": runtime, "dispatch_s": {"default": per_op}, "module_s": 0.0,
                                       "step_s": twin["step_s"]})
        params = params.model_copy(update={"host": host, "fuse_vector_ops": runtime == "compiled"})
        cal = json.loads(params.model_dump_json())
        # the tiny-op figures, for comparison: the framework's Python between ops, which the twin
        # includes and they do not, is most of a step's host time
        cal["host_micro"] = json.loads(micro.model_dump_json())
        cal["twin"] = twin
        (outdir / "calibration.yaml").write_text(yaml.safe_dump(cal, sort_keys=False))
        target_raw = {"target": "host_cpu", "energy": "energy/host_cpu.yaml",
                      "params": json.loads(params.model_dump_json())}
    else:
        gpu_file = gpu_file_for(info["name"])
        say(f"measuring the host: {model}'s twin on the GPU, {runtime} (its step is the host's dispatch)")
        twin = measure_twin(spec, dtype, steps=30, passes=2, device="cuda", runtime=runtime,
                            layers=TWIN_COMPILED_LAYERS if runtime == "compiled" else None)
        host = {"runtime": runtime, "overlap": True, "dispatch_s": {"default": twin["per_op_s"]},
                "step_s": twin["step_s"]}
        (outdir / "calibration.yaml").write_text(yaml.safe_dump({"host": host, "twin": twin}, sort_keys=False))
        target_raw = {"file": gpu_file.replace(".yaml", f"_{runtime}.yaml"), "params": {"host": host}}

    # ---- the real run
    say(f"building {model} ({dtype}, random weights) on {device}")
    t0 = time.perf_counter()
    net, config = build_model(spec, dtype, device)
    if runtime == "compiled":
        compile_model(net, device, model)
    info["build_s"] = round(time.perf_counter() - t0, 1)
    say(f"timing {repeats} generations of {prompt} + {decode_tokens} tokens")
    between = None
    if device == "cpu":
        def between():
            probes.append(dict(probe(dtype, params.llc_bytes), when=f"run {len(probes) - 1}"))
    meas = time_generation(net, config, prompt, decode_tokens, repeats, device, progress=say, between=between,
                           warmups=2 if runtime == "compiled" else 1)
    del net
    meas.to_csv(outdir / "measured.csv", index=False)
    info.update(model=model, prompt=prompt, decode_tokens=decode_tokens, runtime=runtime, dtype=dtype)
    (outdir / "machine.json").write_text(json.dumps(info, indent=2) + "\n")

    # ---- the prediction
    say("predicting with the target")
    s = _predict(target_raw, model, prompt, decode_tokens, dtype)
    dec = meas[meas.phase == "decode"]
    measured = {"prefill": float(meas[meas.phase == "prefill"].seconds.median()),
                "decode_step": float(dec.groupby("step").seconds.median().median())}
    predicted = {"prefill": s["prefill"]["latency_s"], "decode_step": s["decode"]["time_per_token_s"]}
    speed = None
    if device == "cpu":
        # a shared machine's speed moves (other tenants' memory traffic): the probes' range says how
        # far, so an error can be read against the machine's own spread
        pr = pd.DataFrame(probes)
        pr.to_csv(outdir / "probes.csv", index=False)
        speed = {k: {"min": float(pr[k].min()), "median": float(pr[k].median()), "max": float(pr[k].max()),
                     "spread": float((pr[k].max() - pr[k].min()) / pr[k].median())} for k in ("stream", "flops")}
    host = s.get("host", {})
    rows = []
    for phase in ("prefill", "decode_step"):
        h = host.get(phase, {})
        rows.append({"phase": phase, "measured_s": measured[phase], "predicted_s": predicted[phase],
                     "error": (predicted[phase] - measured[phase]) / measured[phase],
                     "host_s": h.get("host_s", float("nan")), "device_s": h.get("device_s", float("nan")),
                     "device_idle_s": h.get("device_idle_s", float("nan"))})
    pred = pd.DataFrame(rows)
    pred.to_csv(outdir / "predictions.csv", index=False)
    step_pred = np.array(s["decode"]["step_cycles"], dtype=np.float64) / s["freq_hz"]
    summary = {"device": device, "name": info["name"], "model": model, "runtime": runtime, "dtype": dtype,
               "prompt": prompt, "decode_tokens": decode_tokens, "repeats": repeats,
               "error": {r.phase: float(r.error) for r in pred.itertuples()},
               "measured_s": measured, "predicted_s": predicted, "host": host, "target": target_raw.get("file")
               or "host_cpu (calibrated here)", "twin": twin}
    if speed:
        summary["machine_speed"] = speed
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(dec, step_pred, prompt, summary, outdir / "e2e.png")
    summary["out"] = str(outdir)
    return summary


def _plot(dec: pd.DataFrame, step_pred: np.ndarray, prompt: int, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    med = dec.groupby("context").seconds.median()
    ax.scatter(dec.context, dec.seconds * 1e3, s=8, color="0.6", label="measured (each repeat)")
    ax.plot(med.index, med.values * 1e3, "o-", ms=3, label="measured (median)")
    ax.plot(prompt + np.arange(len(step_pred)), step_pred * 1e3, "-", lw=2, label="predicted")
    e = summary["error"]
    ax.set(xlabel="context (tokens)", ylabel="decode step (ms)",
           title=f"{summary['model']} on {summary['name']} ({summary['runtime']}): prefill {e['prefill'] * 100:+.1f}%, "
                 f"decode {e['decode_step'] * 100:+.1f}%")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(summary: dict, console=None) -> None:
    from sim.tables import console as make_console
    from sim.tables import rich_table

    console = console or make_console()
    rows = [[ph, f"{summary['measured_s'][ph] * 1e3:.2f}", f"{summary['predicted_s'][ph] * 1e3:.2f}",
             f"{summary['error'][ph] * 100:+.1f}%"] for ph in ("prefill", "decode_step")]
    cols = ["phase", "measured ms", "predicted ms", "error"]
    console.print(rich_table(f"{summary['model']} end to end on {summary['name']} ({summary['runtime']}, "
                             f"{summary['dtype']}, prompt {summary['prompt']})", cols, rows, right=set(cols[1:])),
                  crop=False)
    sp = summary.get("machine_speed")
    if sp:
        st, fl = sp["stream"], sp["flops"]
        console.print(f"this machine's speed over the validation (probes.csv): streaming {st['min'] / 1e9:.1f}-"
                      f"{st['max'] / 1e9:.1f} GB/s ({st['spread'] * 100:.0f}% of its median), GEMM "
                      f"{fl['min'] / 1e9:.0f}-{fl['max'] / 1e9:.0f} GFLOP/s ({fl['spread'] * 100:.0f}%)")
    console.print(f"-> {summary['out']}")


__all__ = ["RUNTIMES", "build_model", "compile_model", "measure_twin", "print_summary", "run", "time_generation"]
