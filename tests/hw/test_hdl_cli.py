"""`sim hdl`: Verilog export of every unit (in CI) and the waveform-writing simulation."""

import pytest

from tests.helpers import sim


@pytest.mark.parametrize("unit", ["bitmod_pe", "bitmod_dequant"])
def test_verilog_export(tmp_path, unit):
    r = sim("hdl", "export", unit, "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / f"{unit}.v").read_text()
    assert f"module {unit}(" in text.replace(" (", "(") and "endmodule" in text


def test_simulation_writes_a_waveform(tmp_path):
    vcd = tmp_path / "pe.vcd"
    r = sim("hdl", "sim", "bitmod_pe", "--groups", "3", "--vcd", vcd)
    assert r.returncode == 0, r.stderr
    assert "bit-exact" in r.stdout and "cycles per group" in r.stdout
    assert vcd.read_text().startswith("$") and "sum_valid" in vcd.read_text()


@pytest.mark.parametrize("args,needle", [(["hdl", "export", "nope", "--out", "/tmp/x"], "unknown HDL unit"),
                                         (["hdl", "sim", "bitmod_pe", "--groups", "0"], "--groups must be")])
def test_bad_hdl_input(args, needle):
    r = sim(*args)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr
