"""`sim trace` from the command line: output, files, and one-line errors with exit status 2."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SIM = str(Path(sys.executable).parent / "sim")


def run(*args, env=None):
    return subprocess.run([SIM, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "160", **(env or {})})


def test_list():
    r = run("trace", "--list")
    assert r.returncode == 0
    for name in ("Llama-2-70B", "Qwen2-72B", "all-MiniLM-L6-v2"):
        assert name in r.stdout


@pytest.mark.slow
def test_trace_writes_parquet_and_csv(tmp_path):
    out = tmp_path / "t.parquet"
    r = run("trace", "OPT-1.3B", "--phase", "decode", "--context", "64", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "OPT-1.3B decode" in r.stdout and "total" in r.stdout
    df = pd.read_parquet(out)
    from workloads import trace

    pd.testing.assert_frame_equal(df, trace("OPT-1.3B", "decode", 1, 1, 64), check_like=False)
    r = run("trace", "OPT-1.3B", "--seq", "8", "--by", "kind", "--out", str(tmp_path / "t.csv"))
    assert r.returncode == 0 and (tmp_path / "t.csv").stat().st_size > 0
    assert "gemm" in r.stdout


@pytest.mark.slow
def test_real_text():
    r = run("trace", "all-MiniLM-L6-v2", "--text", "Call me Ishmael.", "--text", "It was the best of times.")
    assert r.returncode == 0, r.stderr
    assert "all-MiniLM-L6-v2 prefill: batch 2" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["trace", "llama2-7"], "did you mean Llama-2-7B"),
    (["trace", "Llama-2-7B", "--seq", "0"], "seq must be a positive integer"),
    (["trace", "Llama-2-7B", "--seq", "-3"], "seq must be a positive integer"),
    (["trace", "Llama-2-7B", "--seq", "2.5"], "seq must be a positive integer"),
    (["trace", "Llama-2-7B", "--batch", "abc", "--seq", "4"], "batch must be a positive integer"),
    (["trace", "Llama-2-7B", "--seq", "4000", "--context", "97"], "exceeds the 4096 positions"),
    (["trace", "Llama-2-7B", "--phase", "decode", "--context", "0"], "context must be a positive integer"),
    (["trace", "Llama-2-7B", "--phase", "decode"], "--context"),
    (["trace", "Llama-2-7B", "--phase", "train", "--seq", "4"], "phase must be one of"),
    (["trace", "Llama-2-7B", "--seq", "4", "--dtype", "fp8"], "dtype must be one of"),
    (["trace", "Llama-2-7B"], "prefill needs the prompt length"),
    (["trace", "all-MiniLM-L6-v2", "--phase", "decode", "--context", "4"], "encoder"),
    (["trace", "Llama-2-7B", "--text", "hi"], "real-text tracing is for encoders"),
    (["trace", "Llama-2-7B", "--seq", "4", "--out", "x.txt"], ".parquet or .csv"),
    (["trace", "--bogus"], "unrecognized arguments"),
    (["frobnicate"], "invalid choice"),
    (["quantize", "Llama-2-7B"], "has no real weights"),
    (["trace", "OPT-1.3B", "--seq", "4", "--by", "flops"], "--by must be one of"),
    (["trace", "OPT-1.3B", "--seq", "4", "--out", "/proc/nope/x.parquet"], "cannot write"),
    (["trace", "all-MiniLM-L6-v2", "--text", "hi", "--phase", "decode"], "--text sets the batch"),
])
def test_bad_input_is_one_line_exit_2(args, needle, capsys):
    """In-process: ``main`` turns every user error into one stderr line and status 2."""
    from sim.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sim: error: ") and needle in lines[0], lines[0]


def test_the_installed_command_exits_2_with_one_line():
    """The console script itself (a subprocess, once): the same one line and exit status."""
    r = run("trace", "llama2-7")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "did you mean Llama-2-7B" in r.stderr


def test_tables_are_never_cut(capsys):
    """`sim trace --list | cat` (not a terminal): every name whole; csv and json read back whole;
    a 40-column terminal wraps lines but drops nothing."""
    import io
    import json

    from rich.console import Console

    from sim.cli import main
    from sim.tables import emit
    from workloads import zoo

    names = [s.name for s in zoo.specs()]
    assert main(["trace", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in names) and "…" not in out
    assert main(["trace", "--list", "--format", "csv"]) == 0
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(df.name) == names and df.params.dtype.kind == "i"
    assert main(["trace", "--list", "--format", "json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == names
    narrow = io.StringIO()
    emit(pd.DataFrame({"name": names, "value": [1.0e6 + k for k in range(len(names))]}), "table", "zoo",
         out=Console(file=narrow, width=40))
    text = narrow.getvalue()
    assert all(n in text for n in names) and "1000000.0" in text and "…" not in text
    assert main(["trace", "--list", "--format", "xml"]) == 2
