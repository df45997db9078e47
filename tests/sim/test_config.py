"""Bad configs: one line on stderr naming the file, key path and line, exit status 2."""

from pathlib import Path

import pytest

from tests.helpers import sim

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "configs" / "targets" / "bitmod_fp16_baseline.yaml"

GOOD = f"""\
workload:
  model: Llama-2-7B
  batch: 1
  prompt: 16
  decode_tokens: 2
hardware:
  file: {TARGET}
run:
  fidelity: analytic
"""


def sim_run(tmp_path, text, *extra):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return sim("run", p, "--out", tmp_path / "out", *extra), p


def test_good_config_runs(tmp_path):
    r, _ = sim_run(tmp_path, GOOD)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "summary.json").exists()


CASES = [
    ("yaml syntax", GOOD.replace("  batch: 1", "  batch: [1"), "line 4, column 9: YAML syntax error", None),
    ("unknown key", GOOD.replace("  batch: 1", "  batch: 1\n  bacth: 2"), "workload.bacth (line 4): unknown key", None),
    ("wrong type", GOOD.replace("  batch: 1", "  batch: one"), "workload.batch (line 3): input should be a valid integer", None),
    ("zero size", GOOD.replace("prompt: 16", "prompt: 0"), "workload.prompt (line 4): input should be greater than 0", None),
    ("negative size", GOOD.replace("decode_tokens: 2", "decode_tokens: -2"), "workload.decode_tokens (line 5)", None),
    ("float size", GOOD.replace("prompt: 16", "prompt: 16.5"), "workload.prompt (line 4)", None),
    ("missing key", GOOD.replace("  prompt: 16\n", ""), "workload.prompt (line 1): missing required key", None),
    ("unknown model", GOOD.replace("Llama-2-7B", "Llama-9-7B"),
     "workload.model (line 2): unknown model 'Llama-9-7B'; did you mean", None),
    ("too long", GOOD.replace("prompt: 16", "prompt: 4095"), "workload.decode_tokens (line 5): seq + context = 4097 exceeds the 4096 positions", None),
    ("unknown target", GOOD.replace(f"  file: {TARGET}", "  target: acelerator"),
     "hardware.target (line 7): unknown target 'acelerator'; did you mean accelerator", None),
    ("missing target file", GOOD.replace(str(TARGET), "targets/nope.yaml"),
     "hardware.file (line 7): no such file 'targets/nope.yaml'", None),
    ("bad param type", GOOD.replace(f"  file: {TARGET}", f"  file: {TARGET}\n  params: {{pe_rows: -4}}"),
     "hardware.params.pe_rows (line 8): input should be greater than 0", None),
    ("unknown param", GOOD.replace(f"  file: {TARGET}", f"  file: {TARGET}\n  params: {{pe_rowz: 4}}"),
     "hardware.params.pe_rowz (line 8): unknown key", None),
    ("unsupported precision", GOOD.replace("  decode_tokens: 2", "  decode_tokens: 2\n  weight_bits: 3"),
     "workload.weight_bits (line 6): target 'accelerator' has no PE latency for w3a16", None),
    ("not a mapping", "- 1\n- 2\n", "expected a YAML mapping", None),
    ("empty", "", "empty file", None),
    ("bad fidelity", GOOD.replace("fidelity: analytic", "fidelity: exact"), "run.fidelity (line 9)", None),
    ("unknown study", "study: frobnicate\n" + GOOD,
     "study (line 1): unknown study 'frobnicate'; valid kinds: run, reproduce, easyspec, lamarr, lamarr_hw", None),
    ("study of another kind's schema", "study: reproduce\n" + GOOD, "missing required key", None),
]


@pytest.mark.parametrize("name,text,needle,_", CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_exit_2(tmp_path, name, text, needle, _):
    """Every class of bad input; the message names the config file, the key and its line."""
    r, p = sim_run(tmp_path, text)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("sim: error: ") and needle in lines[0], lines[0]
    assert lines[0].startswith(f"sim: error: {p}: "), lines[0]


def test_missing_config_file(tmp_path):
    r = sim("run", tmp_path / "nope.yaml")
    assert r.returncode == 2 and r.stderr.strip() == f"sim: error: {tmp_path / 'nope.yaml'}: no such file"


def test_bad_target_file_names_that_file(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text(TARGET.read_text().replace("pe_cols: 24", "pe_cols: wide"))
    r, _ = sim_run(tmp_path, GOOD.replace(str(TARGET), str(bad)))
    assert r.returncode == 2
    assert f"{bad}: params.pe_cols (line " in r.stderr and "valid integer" in r.stderr


def test_missing_energy_table(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text(TARGET.read_text().replace("energy/bitmod_28nm.yaml", "energy/none.yaml"))
    r, _ = sim_run(tmp_path, GOOD.replace(str(TARGET), str(bad)))
    assert r.returncode == 2 and f"{bad}: energy (line 5): no such file 'energy/none.yaml'" in r.stderr


MORE = [
    ("duplicate key", GOOD.replace("  batch: 1", "  batch: 1\n  batch: 2"), "workload.batch (line 4): duplicate key"),
    ("zero latency", GOOD.replace(f"  file: {TARGET}", f"  file: {TARGET}\n  params: {{pe_latency: {{w16a16: 0}}}}"),
     "hardware.params.pe_latency.w16a16 (line 8): input should be greater than 0"),
    ("infinite clock", GOOD.replace(f"  file: {TARGET}", f"  file: {TARGET}\n  params: {{freq_hz: .inf}}"),
     "hardware.params.freq_hz (line 8): input should be a finite number"),
    ("bool for int", GOOD.replace(f"  file: {TARGET}", f"  file: {TARGET}\n  params: {{pe_rows: true}}"),
     "hardware.params.pe_rows (line 8): input should be a valid integer"),
]


@pytest.mark.parametrize("name,text,needle", MORE, ids=[c[0] for c in MORE])
def test_more_bad_configs(tmp_path, name, text, needle):
    r, p = sim_run(tmp_path, text)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sim: error: {p}: ") and needle in lines[0], lines


def test_non_utf8_config(tmp_path):
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"\xff\xfe\x00garbage")
    r = sim("run", p)
    assert r.returncode == 2 and "not a text file" in r.stderr and "Traceback" not in r.stderr


def test_out_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    r, _ = sim_run(tmp_path, GOOD)
    r = sim("run", tmp_path / "cfg.yaml", "--out", tmp_path / "afile")
    assert r.returncode == 2 and "cannot write the results to" in r.stderr and "Traceback" not in r.stderr


def test_energy_table_of_another_node(tmp_path):
    bad = tmp_path / "t.yaml"
    bad.write_text(TARGET.read_text().replace("node_nm: 28", "node_nm: 7"))
    r, _ = sim_run(tmp_path, GOOD.replace(str(TARGET), str(bad)))
    assert r.returncode == 2 and "is for 28 nm but the target is at 7 nm" in r.stderr
