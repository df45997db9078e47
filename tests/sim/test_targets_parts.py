"""Target-file parts: ``extends:`` between target files (the energy tables' merge rule), the CUDA-graph
target files that replaced the runtime parameters repeated across configs, and static power as a
property of the energy table (ET-SoC-1's, scaled with voltage) priced as before."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from models.errors import SimError
from sim.config import CONFIGS_DIR, Hardware
from sim.energy import load_energy
from sim.targets import build, load_target_file
from sim.targets.base import OpArrays
from sim.targets.parts import Precision

ROOT = Path(__file__).resolve().parents[2]
TARGETS = CONFIGS_DIR / "targets"
# what the configs carried inline before the CUDA-graph target files (apmm, matmulfree's GPU layers,
# easyspec's gpu_params, Lamarr's graph_params before they named these files)
GRAPH = {"kernel_overhead_s": 9.0e-7, "fuse_vector_ops": True}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _gpu_parent(tmp_path: Path) -> Path:
    """A copy of the H100 file (its energy path resolves through configs/)."""
    return _write(tmp_path / "parent.yaml", (TARGETS / "gpu_h100_sxm.yaml").read_text())


# ---------------------------------------------------------------------------- extends


def test_extends_merges_params_and_sources_key_by_key(tmp_path):
    _gpu_parent(tmp_path)
    child = _write(tmp_path / "child.yaml", "extends: parent.yaml\ndescription: a child\nparams:\n"
                   "  kernel_overhead_s: 1.0e-6\n  sms: 100\nsources:\n  kernel_overhead_s: my source\n"
                   "  sms: a binned part\n")
    parent = yaml.safe_load((tmp_path / "parent.yaml").read_text())
    spec = load_target_file(child)
    assert spec["params"] == {**parent["params"], "kernel_overhead_s": 1.0e-6, "sms": 100}
    assert spec["sources"] == {**parent["sources"], "kernel_overhead_s": "my source", "sms": "a binned part"}
    assert spec["target"] == "gpu" and spec["energy"] == parent["energy"] and spec["description"] == "a child"
    t, e, hw = build(Hardware(file=str(child)), tmp_path / "c.yaml")
    assert t.params.kernel_overhead_s == 1.0e-6 and t.params.sms == 100
    assert t.params.hbm_bytes_per_s == parent["params"]["hbm_bytes_per_s"]  # inherited
    assert e.name == "gpu-hopper" and hw["file"] == str(child)
    # a config's inline params still win over both files
    t, _, _ = build(Hardware(file=str(child), params={"sms": 7}), tmp_path / "c.yaml")
    assert t.params.sms == 7 and t.params.kernel_overhead_s == 1.0e-6


def test_extends_chains_and_the_nearest_file_wins(tmp_path):
    _gpu_parent(tmp_path)
    _write(tmp_path / "mid.yaml", "extends: parent.yaml\nparams: {sms: 100, max_ctas_per_sm: 1}\n")
    leaf = _write(tmp_path / "leaf.yaml", "extends: mid.yaml\nparams: {sms: 50}\n")
    t, _, _ = build(Hardware(file=str(leaf)), tmp_path / "c.yaml")
    assert (t.params.sms, t.params.max_ctas_per_sm) == (50, 1)


def test_a_child_overrides_the_parents_energy_relative_to_itself(tmp_path):
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "parent.yaml", (TARGETS / "bitmod.yaml").read_text())
    # the child's own table, next to the child: starts from bitmod_28nm.yaml, cheaper PE cycles
    _write(tmp_path / "cheap.yaml", f"extends: {CONFIGS_DIR / 'energy' / 'bitmod_28nm.yaml'}\nname: cheap\n"
           "node_nm: 28\ncomponents:\n  pe_array:\n    actions:\n      pe_cycle: {pj: 0.1, per: PE-cycle, source: test}\n")
    child = _write(tmp_path / "child.yaml", "extends: sub/parent.yaml\nenergy: cheap.yaml\n")
    _, parent_e, _ = build(Hardware(file=str(tmp_path / "sub" / "parent.yaml")), tmp_path / "c.yaml")
    t, e, hw = build(Hardware(file=str(child)), tmp_path / "c.yaml")
    assert parent_e.name == "bitmod-28nm-bitmod-pe" and e.name == "cheap" and e.pj("pe_array.pe_cycle") == 0.1
    assert hw["energy"] == "cheap.yaml" and t.name == "accelerator"
    # and a config's `energy` still wins over the files'
    _, e, _ = build(Hardware(file=str(child), energy="energy/bitmod_28nm.yaml"), tmp_path / "c.yaml")
    assert e.name == "bitmod-28nm"


def test_a_cycle_is_a_one_line_error_naming_the_file_key_and_line(tmp_path):
    a = _write(tmp_path / "a.yaml", "description: a\nextends: b.yaml\n")
    _write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(SimError) as e:
        build(Hardware(file=str(a)), tmp_path / "c.yaml")
    msg = str(e.value)
    assert "\n" not in msg and "a cycle" in msg
    assert msg.startswith(f"{tmp_path / 'b.yaml'}: extends (line 1): 'a.yaml'")
    _write(tmp_path / "self.yaml", "extends: self.yaml\n")
    with pytest.raises(SimError, match=r"self.yaml: extends \(line 1\): 'self.yaml' extends itself \(a cycle\)"):
        build(Hardware(file=str(tmp_path / "self.yaml")), tmp_path / "c.yaml")


def test_a_missing_parent_is_a_one_line_error(tmp_path):
    child = _write(tmp_path / "child.yaml", "target: gpu\nextends: nowhere.yaml\n")
    with pytest.raises(SimError) as e:
        build(Hardware(file=str(child)), tmp_path / "c.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{child}: extends (line 2): no such file 'nowhere.yaml'")


def test_a_bad_parameter_is_located_in_the_file_that_gives_it(tmp_path):
    parent = _gpu_parent(tmp_path)
    text = parent.read_text().replace("  sms: 132\n", "  sms: many\n")
    _write(parent, text)
    line = text.splitlines().index("  sms: many") + 1
    child = _write(tmp_path / "child.yaml", "extends: parent.yaml\nparams: {max_ctas_per_sm: 0.5}\n")
    with pytest.raises(SimError, match=rf"^{tmp_path / 'parent.yaml'}: params.sms \(line {line}\)"):
        build(Hardware(file=str(child)), tmp_path / "c.yaml")
    _write(parent, text.replace("  sms: many\n", "  sms: 132\n"))
    with pytest.raises(SimError, match=rf"^{child}: params.max_ctas_per_sm \(line 2\)"):
        build(Hardware(file=str(child)), tmp_path / "c.yaml")
    _write(tmp_path / "bad.yaml", "extends: parent.yaml\nparams: [1, 2]\n")
    with pytest.raises(SimError, match=r"bad.yaml: params \(line 2\): expected a mapping"):
        build(Hardware(file=str(tmp_path / "bad.yaml")), tmp_path / "c.yaml")
    _write(tmp_path / "odd.yaml", "extends: parent.yaml\nparents: x\n")
    with pytest.raises(SimError, match=r"odd.yaml: parents \(line 2\): unknown key"):
        build(Hardware(file=str(tmp_path / "odd.yaml")), tmp_path / "c.yaml")


# ---------------------------------------------------------------------------- the CUDA-graph files


@pytest.mark.parametrize("base", ["gpu_h100_sxm", "gpu_a100_sxm_80gb", "gpu_h200"])
def test_cuda_graph_files_resolve_to_the_params_the_configs_used(base):
    here = CONFIGS_DIR / "x.yaml"
    _, e, hw = build(Hardware(file=f"targets/{base}_cudagraph.yaml"), here)
    _, e0, hw0 = build(Hardware(file=f"targets/{base}.yaml", params=GRAPH), here)
    assert hw["params"] == hw0["params"] and hw["target"] == hw0["target"] and hw["energy"] == hw0["energy"]
    assert e == e0
    spec = load_target_file(TARGETS / f"{base}_cudagraph.yaml")
    assert set(yaml.safe_load((TARGETS / f"{base}_cudagraph.yaml").read_text())["params"]) == set(GRAPH)
    assert spec["sources"]["kernel_overhead_s"] != load_target_file(TARGETS / f"{base}.yaml")["sources"][
        "kernel_overhead_s"]


def test_the_configs_point_at_the_cuda_graph_files():
    from sim.studies.lamarr.hardware import GpuCheck

    assert GpuCheck(measured="x").graph_target == "targets/gpu_h100_sxm_cudagraph.yaml"  # Lamarr's graph rows
    apmm = yaml.safe_load((CONFIGS_DIR / "apmm" / "reproduce.yaml").read_text())
    for name, acc in apmm["accelerators"].items():
        assert acc["file"] == "../targets/gpu_a100_sxm_80gb_cudagraph.yaml", name
        t, _, _ = build(Hardware(file=acc["file"], params=acc.get("params", {}).get("all", {})),
                        CONFIGS_DIR / "apmm" / "reproduce.yaml")
        assert (t.params.kernel_overhead_s, t.params.fuse_vector_ops) == (9.0e-7, True)
        assert t.params.arbitrary_precision == name.startswith("apmm_")
    easy = yaml.safe_load((CONFIGS_DIR / "easyspec" / "reproduce.yaml").read_text())
    t, _, _ = build(Hardware(file=easy["gpu"], params=easy.get("gpu_params", {})),
                    CONFIGS_DIR / "easyspec" / "reproduce.yaml")
    assert (t.params.kernel_overhead_s, t.params.fuse_vector_ops, t.params.sms) == (9.0e-7, True, 132)
    for f in ("gpu_layer_mmfree.yaml", "gpu_layer_transformer.yaml"):
        hw = yaml.safe_load((CONFIGS_DIR / "matmulfree" / f).read_text())["hardware"]
        t, _, _ = build(Hardware(**hw), CONFIGS_DIR / "matmulfree" / f)
        assert (t.params.kernel_overhead_s, t.params.fuse_vector_ops, t.params.sms) == (9.0e-7, True, 108)


# ---------------------------------------------------------------------------- static power


def _lamarr_ops(stage="rich", n=64):
    from workloads import api

    tr = api.trace(f"Lamarr-{stage}", "prefill", n, 1, 0, "fp16")
    return tr, OpArrays.from_frame(tr)


#: the energy table's idle power by rail (configs/energy/etsoc1.yaml), W
RAIL_W = {"minion_rail": 9.77, "board": 18.33}


@pytest.mark.parametrize("freq", [3.0e8, 6.0e8, 7.5e8, 8.0e8])
def test_etsoc_static_power_by_rail_over_each_ops_own_seconds(freq):
    """ET-SoC's static power per component: the minion rail's scaled by (V / v_ref)^exponent at the
    DVFS point, the board's not, each drawn over the op's own simulated seconds (its `.second`
    counts), whatever time the schedule passes."""
    t, e, _ = build(Hardware(file="targets/etsoc1.yaml", params={"freq_hz": freq}), CONFIGS_DIR / "x.yaml")
    p = t.params
    scale = (p.voltage / p.v_ref) ** p.static_exponent
    assert t.static_scale == {"minion_rail": scale} and e.static_scale == {"minion_rail": scale}
    assert e.static_w == pytest.approx(RAIL_W["minion_rail"] * scale + RAIL_W["board"], rel=1e-15)
    assert load_energy(CONFIGS_DIR / "energy" / "etsoc1.yaml").static_w == pytest.approx(28.1)  # as loaded
    _, ops = _lamarr_ops()
    c = t.cost(ops, Precision(16, 16))
    own = c.actions["minion_rail.second"]  # the ops' own simulated seconds
    assert own.sum() > 0 and np.array_equal(own, c.actions["board.second"])
    anything = np.full(len(c), 123.0)  # the scheduled time: not what ET-SoC's static power is drawn over
    out = e.apply(c.actions, anything)
    np.testing.assert_allclose(out["minion_rail"], own * RAIL_W["minion_rail"] * scale * 1e12, rtol=1e-14, atol=0)
    np.testing.assert_allclose(out["board"], own * RAIL_W["board"] * 1e12, rtol=1e-14, atol=0)
    assert set(e.dynamic(c.actions)) == {"compute", "l1", "l3", "dram", "network"}


def test_lamarr_static_power_per_stage():
    """The Lamarr hardware model's static power per stage: ET-SoC's static energy (both rails) over
    the busy time, and a GPU table's static_w."""
    from sim.engine.schedule import schedule
    from sim.studies.lamarr import hardware as L

    t, e, _ = build(Hardware(file="targets/etsoc1.yaml"), CONFIGS_DIR / "x.yaml")
    tr, ops = _lamarr_ops()
    c = t.cost(ops, Precision(16, 16))
    sched = schedule(c, tr["layer"].to_numpy(), "simpy")
    busy = float(np.sum(sched.op_cycles)) / t.freq_hz
    want = float(np.sum(c.actions["minion_rail.second"])) * (RAIL_W["minion_rail"] + RAIL_W["board"]) / busy
    got = L.stage_cost(t, e, "rich", 64, "fp16")
    assert got["static_w"] == pytest.approx(want, rel=1e-12)
    assert "minion_rail" not in got["dynamic_j"] and "board" not in got["dynamic_j"]
    g, ge, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml"), CONFIGS_DIR / "x.yaml")
    assert L.stage_cost(g, ge, "rich", 64, "fp16")["static_w"] == pytest.approx(ge.static_w, rel=1e-14)
    assert ge.static_w == 75.0 and ge.static_scale == 1.0


def test_other_tables_price_static_power_over_the_ops_time_exactly_as_before():
    t, e, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml"), CONFIGS_DIR / "x.yaml")
    _, ops = _lamarr_ops()
    c = t.cost(ops, Precision(16, 16))
    seconds = c.compute_cycles / t.freq_hz
    out = e.apply(c.actions, seconds)
    dyn = np.asarray(c.actions["hbm.read"], float) * e.pj("hbm.read") + np.asarray(c.actions["hbm.write"],
                                                                                      float) * e.pj("hbm.write")
    assert np.array_equal(out["hbm"], dyn + 75.0 * seconds * 1e12)  # bit for bit: the former formula


def test_a_table_gives_static_power_as_static_w_not_an_action(tmp_path):
    bad = _write(tmp_path / "t.yaml", "name: t\nnode_nm: 7\ncomponents:\n  static:\n    actions:\n"
                 "      second: {pj: 2.81e+13, per: second, source: x}\n")
    with pytest.raises(SimError, match=r"t.yaml: components.static.actions.*static_w"):
        load_energy(bad)
    scaled = _write(tmp_path / "s.yaml", "name: s\nnode_nm: 7\nstatic_scale: 2.0\ncomponents: {}\n")
    with pytest.raises(SimError, match=r"s.yaml: static_scale \(line 3\): set by the target"):
        load_energy(scaled)
    e = load_energy(CONFIGS_DIR / "energy" / "etsoc1.yaml")
    with pytest.raises(SimError, match="no component 'chip'"):
        e.apply({"chip.second": np.ones(1)}, np.ones(1))


# ---------------------------------------------------------------------------- the Memory part


@pytest.mark.parametrize("name", ["gpu_h100_sxm", "gpu_a100_sxm_80gb_cudagraph", "etsoc1", "bitmod",
                                  "bitmod_fp16_baseline", "fpga_d5005_mmfree"])
def test_every_target_states_its_memory_in_one_unit_style(name):
    from sim.targets.parts import Memory

    t, _, _ = build(Hardware(file=f"targets/{name}.yaml"), CONFIGS_DIR / "x.yaml")
    m = t.memory
    assert isinstance(m, Memory) and m.bytes_per_s > 0
    # the same bandwidth the model uses, per cycle (exactly where the parameter is in bytes per second)
    assert m.bytes_per_cycle(t.freq_hz) == pytest.approx(t.dram_bytes_per_cycle(), rel=1e-15)
    assert m.source and "sources" not in m.source
    first = m.source.split(":")[0]
    assert first in type(t.params).model_fields and len(m.source) > len(first) + 10  # the file's source text


def test_memory_figures_by_family():
    here = CONFIGS_DIR / "x.yaml"
    g, _, _ = build(Hardware(file="targets/gpu_h100_sxm.yaml"), here)
    assert (g.memory.capacity_bytes, g.memory.bytes_per_s, g.memory.efficiency) == (80_000_000_000, 3.35e12, 0.936)
    assert g.dram_bytes_per_cycle() == 3.35e12 / 1.83e9
    e, _, _ = build(Hardware(file="targets/etsoc1.yaml"), here)
    assert (e.memory.bytes_per_s, e.memory.channels, e.memory.capacity_bytes) == (7.6e10, 16, None)
    a, _, _ = build(Hardware(file="targets/bitmod.yaml", params={"dram_bits_per_cycle": 512}), here)
    assert a.memory.bytes_per_s == 64 * a.params.freq_hz and a.dram_bytes_per_cycle() == 64
    assert "hardware.params.dram_bits_per_cycle" in a.memory.source  # set inline: the config is its source


def test_every_target_states_its_host_dispatch_cost():
    """The Host part: the fixed cost per dispatched op each family charges, from its own parameter."""
    from sim.targets.parts import Host

    here = CONFIGS_DIR / "x.yaml"
    expect = {"gpu_h100_sxm": ("kernel_overhead_s", 3.0e-6), "gpu_h100_sxm_cudagraph": ("kernel_overhead_s", 9.0e-7),
              "etsoc1": ("op_overhead_s", None), "bitmod_fp16_baseline": (None, 0.0), "fpga_d5005_mmfree": (None, 0.0)}
    for name, (param, value) in expect.items():
        t, _, _ = build(Hardware(file=f"targets/{name}.yaml"), here)
        h = t.host
        assert isinstance(h, Host) and h.source
        if param:
            assert h.dispatch_s == getattr(t.params, param) and h.source.startswith(param)
        if value is not None:
            assert h.dispatch_s == value
    cal = yaml.safe_load((ROOT / "results" / "validation" / "cpu" / "calibration.yaml").read_text())
    cal.pop("description", None)
    cpu, _, _ = build(Hardware(target="host_cpu", energy="energy/host_cpu.yaml", params=cal), here)
    assert cpu.host.dispatch_s == cpu.params.overhead_s > 0
