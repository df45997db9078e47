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
def test_bad_input_is_one_line_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("sim: error: ") and needle in lines[0], lines[0]
