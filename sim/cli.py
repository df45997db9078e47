"""The ``sim`` command line.

Every user error is a :class:`SimError`: one line on stderr, exit status 2, never a traceback.
Subcommands import their heavy dependencies only when they run, so errors and cached answers
come back fast.
"""

from __future__ import annotations

import argparse
import sys

from models.errors import SimError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is a SimError (one line, exit 2) like every other bad input."""

    def error(self, message: str):
        raise SimError(f"{message} (see `{self.prog} --help`)")


def _add_trace(sub) -> None:
    p = sub.add_parser(
        "trace",
        help="aten-level trace of a zoo model (one row per op: FLOPs, bytes, shapes, roles)",
        description="Trace one step of a zoo model at the aten level. Traces are cached on disk "
        "($MLHW_CACHE_DIR or ~/.cache/mlhw-sim), so a repeat is instant.",
    )
    p.add_argument("model", nargs="?", help="zoo model name (see --list)")
    p.add_argument("--list", action="store_true", help="list the zoo and exit")
    p.add_argument("--phase", default="prefill", help="prefill | decode (default prefill)")
    p.add_argument("--batch", default="1", help="batch size B (default 1)")
    p.add_argument("--seq", default=None,
                   help="prefill: prompt length S (required); decode: new tokens per step (default 1)")
    p.add_argument("--context", default=None,
                   help="tokens already in the KV cache L (decode: required; prefill: 0, chunked if > 0)")
    p.add_argument("--dtype", default=None, help="fp16 | bf16 | fp32 (default fp16; fp32 with --text)")
    p.add_argument("--text", action="append", default=None, metavar="SENTENCE",
                   help="run the model's real weights on this sentence (repeatable; real-weight models only)")
    p.add_argument("--by", default="role", help="group the printed summary by this column (default role)")
    p.add_argument("--out", default=None, help="write the trace to this .parquet or .csv file")
    p.add_argument("--no-cache", action="store_true", help="trace afresh, neither reading nor writing the cache")
    _add_format(p)
    p.set_defaults(func=_cmd_trace)


def _add_format(p) -> None:
    p.add_argument("--format", default="table", dest="fmt",
                   help="table (default; never cuts a cell) | csv | json (for a script to read whole)")


def _check_format(fmt: str) -> None:
    from sim.tables import FORMATS

    if fmt not in FORMATS:
        raise SimError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def _fmt(x: float, unit: str = "") -> str:
    """Compact engineering notation: 14.4G, 2.62M, 0."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{prefix}{unit}"
    return f"{x:.3g}{unit}"


def _cmd_list(fmt: str) -> int:
    import pandas as pd

    from sim.tables import emit
    from workloads import zoo

    def params(n: float) -> str:
        return f"{n / 1e9:.3g}B" if n >= 1e9 else f"{n / 1e6:.3g}M"

    rows = [{"name": s.name, "kind": s.kind, "params": s.published_params if fmt != "table" else params(s.published_params),
             "layers": s.layers, "d_model": s.hidden, "heads": s.heads, "kv_heads": s.kv_heads,
             "max_positions": s.max_positions, "weights": "real" if s.real_weights else "meta"} for s in zoo.specs()]
    emit(pd.DataFrame(rows), fmt, "Model zoo", right={"params", "layers", "d_model", "heads", "kv_heads",
                                                       "max_positions"})
    return 0


def _cmd_trace(args) -> int:
    _check_format(args.fmt)
    if args.list:
        return _cmd_list(args.fmt)
    if not args.model:
        raise SimError("sim trace: a model name is needed (or --list)")
    from workloads import summarize, trace, trace_text

    groupable = ("role", "kind", "layer", "op", "module", "dtype")
    if args.by not in groupable:
        raise SimError(f"--by must be one of {', '.join(groupable)}, got {args.by!r}")
    if args.out and not args.out.endswith((".parquet", ".csv")):
        raise SimError(f"--out must name a .parquet or .csv file, got {args.out!r}")
    if args.text:
        if args.phase != "prefill" or args.seq is not None or args.context is not None or args.batch != "1":
            raise SimError("--text sets the batch and sequence from the sentences; it takes no --phase, --batch, "
                           "--seq or --context")
        df, _, _ = trace_text(args.model, args.text, dtype=args.dtype or "fp32")
    else:
        context = args.context if args.context is not None else (None if args.phase == "decode" else "0")
        if context is None:
            raise SimError("decode needs the KV-cache length: --context L")
        df = trace(args.model, args.phase, args.batch, args.seq, context, args.dtype or "fp16",
                   use_cache=not args.no_cache)

    if args.out:
        from pathlib import Path

        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix == ".csv":
                df.to_csv(out, index=False)
            else:
                df.to_parquet(out, index=False)
        except OSError as e:
            raise SimError(f"cannot write {out}: {e.strerror or e}") from None

    from sim.tables import console, emit

    a = df.attrs
    title = (f"{a['model']} {a['phase']}: batch {a['batch']}, seq {a['seq']}, context {a['context']}, "
             f"{a['dtype']}  ({len(df)} ops)")
    cols = {"flops": "FLOP", "bytes_read": "read B", "bytes_written": "written B", "weight_bytes": "weight B",
            "kv_bytes_read": "KV read B", "kv_bytes_written": "KV write B"}
    g = summarize(df, args.by)
    g.loc["total"] = g.sum()
    g = g.reset_index().rename(columns={"index": args.by})
    g["ops"] = g["ops"].astype(int)
    if args.fmt != "table":
        emit(g, args.fmt)
        return 0
    g = g.rename(columns=cols)
    emit(g, "table", title, formats={c: _fmt for c in cols.values()}, right={"ops", *cols.values()})
    if args.out:
        console().print(f"trace written to {args.out}")
    return 0


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="simulate a config: latency, energy, report",
                       description="Run a config (workload + hardware + run options) end to end and write "
                       "ops.parquet, summary.json and report.html.")
    p.add_argument("config", help="YAML config (see configs/quickstart.yaml)")
    p.add_argument("--out", default=None, help="output folder (default: the config's run.out, else results/<name>)")
    p.add_argument("--fidelity", default=None, help="override run.fidelity: simpy | analytic")
    p.add_argument("--trace", action="store_true",
                   help="also write trace.json, the run's timeline for ui.perfetto.dev or chrome://tracing")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args) -> int:
    """Dispatch a config to the study its top-level ``study:`` key names (a plain run without it)."""
    from pathlib import Path

    from sim import studies
    from sim.config import load_yaml
    from sim.studies.base import Options
    from sim.tables import console as make_console

    if args.fidelity not in (None, "simpy", "analytic"):
        raise SimError(f"--fidelity must be simpy or analytic, got {args.fidelity!r}")
    path = Path(args.config)
    data, lines = load_yaml(path)
    kind = studies.kind_of(data, path, lines)
    study = studies.get(kind)
    if args.trace and not study.traceable:
        can = [k for k in studies.kinds() if studies.get(k).traceable]
        raise SimError(f"--trace: a {kind} study has no timeline to write (traceable: {', '.join(can)})")
    console = make_console()
    with _progress() as progress:
        result = study.run(path, Options(out=args.out, fidelity=args.fidelity), progress)
        out = Path(result.out)
        progress("writing the results")
        files: list[str] = []
        _write_results(out, lambda: files.extend(study.write(out, result)))
        if args.trace:
            from sim.engine import trace

            _write_results(out, lambda: trace.write(study.spans(result), out / "trace.json"))
            files.append("trace.json")
    study.print(result, console)
    console.print(f"wrote {out}/" + ", ".join(files))
    return 0


class _progress:
    """The one progress display of ``sim run``: a bar where the study counts its work, a spinner
    otherwise; on stderr, and only on a terminal."""

    def __enter__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        err = Console(stderr=True)
        self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
        self._bar.__enter__()
        self._task = self._bar.add_task("starting", total=None)
        return self

    def __call__(self, what: str, done: int | None = None, total: int | None = None) -> None:
        if total is None:
            self._bar.update(self._task, description=what)
        else:
            self._bar.update(self._task, description=what, completed=done or 0, total=total)

    def __exit__(self, *exc):
        return self._bar.__exit__(*exc)


def _write_results(out, write) -> None:
    """Run ``write``; a file-system failure is one user error naming the folder."""
    try:
        write()
    except OSError as e:
        raise SimError(f"cannot write the results to {out}: {e.strerror or e}") from None


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="run a design-space sweep into a results store and a report",
                       description="Run every point of a sweep file (a base config plus axes over dotted config "
                       "keys). Restarting a sweep runs only the points not yet stored.")
    p.add_argument("sweep", help="sweep YAML (see configs/sweeps/)")
    p.add_argument("--dry-run", action="store_true", help="print the point count and the first points; run nothing")
    p.add_argument("--out", default=None, help="results folder (default: the sweep's out, else results/sweeps/<name>)")
    p.add_argument("--workers", default=None, help="local worker processes (default: all cores; 0: in this process)")
    p.add_argument("--scheduler", default=None, help="tcp://HOST:PORT of a Dask scheduler to run the points on")
    p.add_argument("--batch-size", default=None, help="points per task (default: sized to the sweep)")
    p.set_defaults(func=_cmd_sweep)
    r = sub.add_parser("report", help="write the report of a sweep's results folder",
                       description="Write report.html, points.csv and points.parquet for a sweep's results.")
    r.add_argument("results", help="a sweep's results folder (holds sweep.sqlite)")
    r.set_defaults(func=_cmd_report)


def _int_arg(name: str, value, minimum: int):
    if value is None:
        return None
    try:
        v = int(value)
    except ValueError:
        raise SimError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if v < minimum:
        raise SimError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return v


def _cmd_sweep(args) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from sim.sweep import load_sweep, run_sweep
    from sim.sweep_report import write_sweep_report

    from sim.tables import console as make_console

    workers = _int_arg("--workers", args.workers, 0)
    batch = _int_arg("--batch-size", args.batch_size, 1)
    console = make_console()
    sw = load_sweep(args.sweep, args.out)
    if args.dry_run:
        console.print(f"{sw.name}: {len(sw.points)} points -> {sw.out}")
        for p in sw.points[:10]:
            console.print(f"  {p.idx:5d}  " + ", ".join(f"{k}={v}" for k, v in p.params.items()))
        if len(sw.points) > 10:
            console.print(f"  ... and {len(sw.points) - 10} more")
        return 0
    err = Console(stderr=True)
    with Progress(TextColumn("sweep {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=err, disable=not err.is_terminal) as bar:
        task = bar.add_task(sw.name, total=None)
        counts = run_sweep(sw, workers=workers, scheduler=args.scheduler, batch_size=batch,
                           progress=lambda done, total: bar.update(task, completed=done, total=total))
    report = write_sweep_report(sw.out)
    infeasible = f", {counts['infeasible']} infeasible" if counts.get("infeasible") else ""
    console.print(f"{sw.name}: {counts['points']} points ({counts['already']} already stored, {counts['ok']} ran, "
                  f"{counts['error']} failed{infeasible}) in {counts['wall_s']:.1f} s; report: {report}")
    return 0


def _cmd_report(args) -> int:
    from sim.sweep_report import write_sweep_report

    print(f"wrote {write_sweep_report(args.results)}")
    return 0


def _add_quantize(sub) -> None:
    p = sub.add_parser("quantize", help="weight-quantization quality of a real-weight model (BitMoD numerics)",
                       description="Quantize the linear layers of a zoo model with real weights per group of 128 "
                       "with BitMoD's FP mixtures, INT-asym, INT-sym and plain FP, at 4 and 3 bits; report "
                       "weight MSE per layer and the sentence-embedding cosine similarity to FP32.")
    p.add_argument("model", nargs="?", default="all-MiniLM-L6-v2", help="a zoo model with real weights")
    p.add_argument("--out", default="results/bitmod/minilm", help="folder for per_layer.csv and summary.csv")
    p.set_defaults(func=_cmd_quantize)


def _cmd_quantize(args) -> int:
    from sim.quality import evaluate, write
    from workloads import zoo

    spec = zoo.get(args.model)
    if not spec.real_weights:
        raise SimError(f"model {spec.name!r} has no real weights in the zoo; quantization quality needs them")
    per_layer, summary = evaluate(spec.name)
    try:
        out = write(args.out, per_layer, summary)
    except OSError as e:
        raise SimError(f"cannot write {args.out}: {e.strerror or e}") from None
    from sim.tables import console, rich_table

    cols = ["bits", "format", "bits/weight", "weight MSE", "embedding cos (mean)", "(min)"]
    rows = [[str(r["bits"]), r["format"], f"{r['bits_per_weight']:.4g}", f"{r['weight_mse']:.3e}",
             f"{r['cos_mean']:.4f}", f"{r['cos_min']:.4f}"] for _, r in summary.iterrows()]
    console = console()
    console.print(rich_table(f"{spec.name}: weight quantization, groups of 128", cols, rows, right=set(cols)),
                  crop=False)
    console.print(f"wrote {out}/per_layer.csv, summary.csv")
    return 0


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="time real GEMM kernels on this device and check the target's predictions",
                       description="Run torch GEMMs over a shape set on the local device (warm-up, repeats, "
                       "median), write measured.csv and machine.json, predict each shape with the matching "
                       "target (the host CPU calibrated by micro-benchmarks, or the GPU's target file) and write "
                       "the errors, the MAPE and a predicted-vs-measured plot.")
    p.add_argument("--device", default=None, help="cpu | cuda (required unless --from)")
    p.add_argument("--from", dest="from_dir", default=None, metavar="DIR",
                   help="measure nothing: predict the measurement set in DIR (measured.csv, machine.json) again "
                   "with the model as it is now, rewriting its predictions, summary and plot (or into --out)")
    p.add_argument("--shapes", default="default",
                   help="smoke | default | zoo | square | flat | gpu, or a CSV file with columns M, N, K[, batch]")
    p.add_argument("--out", default=None, help="output folder (default results/validation/<device name>)")
    p.add_argument("--dtype", default=None, help="fp32 | bf16 | fp16 (default bf16 on a CPU, fp16 on a GPU)")
    p.add_argument("--samples", default="7", help="timed samples per shape; the median is kept (default 7)")
    p.add_argument("--quick", action="store_true", help="shorter CPU calibration (smaller micro-benchmarks)")
    e = p.add_argument_group("end to end (--e2e): a whole model's prefill and decode steps")
    e.add_argument("--e2e", action="store_true", help="time a zoo model (random weights, static KV cache) instead "
                   "of GEMMs, and check the target's prediction with the runtime's host")
    e.add_argument("--model", default=None, help="a zoo model (sim models lists them), e.g. OPT-1.3B")
    e.add_argument("--prompt", default="128", help="prompt tokens (default 128)")
    e.add_argument("--decode-tokens", default="16", help="decode steps timed per generation (default 16)")
    e.add_argument("--runtime", default="eager", help="eager | compiled (default eager)")
    e.add_argument("--repeats", default="3", help="timed generations; medians kept (default 3)")
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args) -> int:
    import sys as _sys

    from rich.console import Console

    from sim import validate

    samples = _int_arg("--samples", args.samples, 1)
    err = Console(stderr=True)
    live = _sys.stderr.isatty()
    say = (lambda m: err.print(m, end="\r" if live else "\n")) if live else None
    if args.from_dir:
        if args.e2e or args.device:
            raise SimError("--from predicts a committed GEMM set again; it takes no --device or --e2e")
        s = validate.repredict(args.from_dir, args.out)
        validate.print_summary(s)
        return 0
    if not args.device:
        raise SimError("validate needs --device cpu|cuda (or --from DIR)")
    if args.e2e:
        from sim import validate_e2e

        if not args.model:
            raise SimError("--e2e needs --model NAME (a zoo model, e.g. OPT-1.3B)")
        s = validate_e2e.run(args.device, args.model, _int_arg("--prompt", args.prompt, 1),
                             _int_arg("--decode-tokens", args.decode_tokens, 1), args.runtime, args.dtype,
                             args.out, _int_arg("--repeats", args.repeats, 1), args.quick, progress=say)
        validate_e2e.print_summary(s)
        return 0
    if args.model or args.runtime != "eager":
        raise SimError("--model and --runtime belong to --e2e")
    s = validate.run(args.device, args.shapes, args.out, args.dtype, samples, args.quick,
                     progress=(lambda m: err.print(m, end="\r" if live else "\n")) if live else None)
    validate.print_summary(s)
    return 0


def _add_hdl(sub) -> None:
    p = sub.add_parser("hdl", help="RTL units: Verilog export and simulation",
                       description="Export an Amaranth unit to Verilog, or simulate the BitMoD PE on random groups "
                       "against its numpy reference (optionally writing a waveform).")
    hsub = p.add_subparsers(dest="hdl_command", parser_class=_Parser)
    e = hsub.add_parser("export", help="write <unit>.v")
    e.add_argument("unit", help="bitmod_pe | bitmod_dequant | matmulfree_ternary | matmulfree_row")
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(func=_cmd_hdl_export)
    s = hsub.add_parser("sim", help="simulate random groups and check them bit for bit")
    s.add_argument("unit", help="bitmod_pe")
    s.add_argument("--groups", default="16", help="random groups of 128 weights (default 16)")
    s.add_argument("--seed", default="0")
    s.add_argument("--vcd", default=None, help="write a waveform to this .vcd file")
    s.set_defaults(func=_cmd_hdl_sim)
    p.set_defaults(func=_cmd_hdl_missing)


def _cmd_hdl_missing(args) -> int:
    raise SimError("sim hdl: export or sim (see `sim hdl --help`)")


def _cmd_hdl_export(args) -> int:
    from hw.tools import export

    print(f"wrote {export(args.unit, args.out)}")
    return 0


def _cmd_hdl_sim(args) -> int:
    from hw.tools import get_unit, simulate_pe

    get_unit(args.unit)
    if args.unit != "bitmod_pe":
        raise SimError(f"sim hdl sim: random-vector simulation is for bitmod_pe, not {args.unit!r}")
    groups = _int_arg("--groups", args.groups, 1)
    seed = _int_arg("--seed", args.seed, 0)
    r = simulate_pe(groups, seed, args.vcd)
    cyc = ", ".join(f"{f} {c}" for f, c in sorted(r["cycles_per_group"].items()))
    print(f"bitmod_pe: {r['groups']} random groups, {'bit-exact' if r['bit_exact'] else 'MISMATCHES: ' + str(r['mismatches'])}"
          f" against models.bitmod; cycles per group: {cyc}" + (f"; waveform in {args.vcd}" if args.vcd else ""))
    return 0 if r["bit_exact"] else 1


def build_parser() -> argparse.ArgumentParser:
    from sim import __version__

    p = _Parser(prog="sim", description="Models of the hardware that runs ML workloads.")
    p.add_argument("--version", action="version", version=f"mlhw-sim {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    _add_run(sub)
    _add_sweep(sub)
    _add_quantize(sub)
    _add_hdl(sub)
    _add_trace(sub)
    _add_validate(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except SimError as e:
        print(f"sim: error: {e}", file=sys.stderr)
        return SimError.exit_code
    except KeyboardInterrupt:
        print("sim: interrupted", file=sys.stderr)
        return 130


def _entry() -> None:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    _entry()
