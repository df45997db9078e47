"""Target registry.  A target module registers its class with :func:`register`; configs name it.

``build(hardware, base)`` resolves a config's ``hardware`` section: a target file
(``configs/targets/*.yaml``: ``target``, ``energy``, ``params``, ``sources``, ``description``, and
``extends``: another target file it starts from, merged as the energy tables merge) and/or inline
``params`` overriding it, validated by the target's own parameter schema.  The energy table comes back
with its static power scaled to the target's operating point (a target's ``static_scale``, default 1).
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import ValidationError

from models.errors import SimError
from sim.config import CONFIGS_DIR, Hardware, extends_path, load_yaml, located, resolve_path, validation_error
from sim.energy import EnergyTable, load_energy
from sim.targets.base import Costs, Target

_TARGETS: dict[str, type[Target]] = {}


def register(cls: type[Target]) -> type[Target]:
    _TARGETS[cls.name] = cls
    return cls


def get(name: str) -> type[Target]:
    _load_builtin()
    if name in _TARGETS:
        return _TARGETS[name]
    close = difflib.get_close_matches(name, list(_TARGETS), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise SimError(f"unknown target {name!r}{hint} (known: {', '.join(sorted(_TARGETS))})")


def names() -> list[str]:
    _load_builtin()
    return sorted(_TARGETS)


def _load_builtin() -> None:
    from sim.targets import accelerator, cpu, etsoc, fpga, gpu  # noqa: F401  (register themselves)


def _existing(name: str, base: Path, src: Path, key: str, lines: dict) -> Path:
    """Resolve a file named in ``src`` at ``key``; a missing one is an error naming both."""
    p = resolve_path(name, base)
    if not p.exists():
        raise SimError(f"{located(src, key, lines)}: no such file {name!r} "
                       f"(looked in {base} and {CONFIGS_DIR})")
    return p


_FILE_KEYS = {"extends", "target", "energy", "params", "sources", "description"}


def load_target_file(path: Path, _seen: tuple = ()) -> dict:
    """A target file with what it ``extends:`` (another target file, relative to this one) merged in, by
    the energy tables' rule: this file's ``target``, ``energy`` and ``description`` replace the parent's,
    its ``params`` and ``sources`` replace or add to the parent's key by key.

    Returns ``{"target", "energy", "description", "params", "sources"}``, ``"lines"`` (this file's line
    map) and ``"from"``: for ``target``, ``energy`` and each parameter, the ``(file, line map)`` that gave
    it (errors name that file, and an ``energy`` path is relative to it).  Every problem is a one-line
    SimError naming the file, the key and its line."""
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        raise SimError(f"{path}: expected a mapping (a target file)")
    unknown = set(data) - _FILE_KEYS
    if unknown:
        raise SimError(f"{located(path, (min(unknown),), lines)}: unknown key")
    for key in ("params", "sources"):
        if not isinstance(data.get(key) or {}, dict):
            raise SimError(f"{located(path, key, lines)}: expected a mapping")
    out: dict = {"target": None, "energy": None, "description": None, "params": {}, "sources": {}, "from": {}}
    if data.get("extends") is not None:
        out = load_target_file(extends_path(path, data["extends"], lines, _seen), _seen + (path.resolve(),))
    own = data.get("params") or {}
    for key in ("target", "energy", "description"):
        if data.get(key) is not None:
            out[key] = data[key]
            out["from"][key] = (path, lines)
    out["params"] = {**out["params"], **own}
    out["sources"] = {**out["sources"], **(data.get("sources") or {})}
    out["from"].update({("params", k): (path, lines) for k in own})
    out["lines"] = lines
    return out


def _static_scale(target: Target) -> float | dict[str, float]:
    """The factor on the energy table's static power at the target's operating point (1 unless the target
    reports one, for the whole table or per component: ET-SoC's minion rail follows its voltage, the rest
    of the board does not).  A point the target refuses leaves 1: its cost() raises."""
    try:
        s = getattr(target, "static_scale", 1.0)
    except SimError:
        return 1.0
    return {k: float(v) for k, v in s.items()} if isinstance(s, dict) else float(s)


def build(hw: Hardware, config_path: Path, lines: dict | None = None) -> tuple[Target, EnergyTable, dict]:
    """The target, its energy table (static power scaled to the target's operating point) and the
    resolved hardware description of a config."""
    base = config_path.parent
    lines = lines or {}
    file_params: dict = {}
    target_name, energy_name = hw.target, hw.energy
    file_path, spec = None, {"from": {}, "lines": {}}
    if hw.file:
        file_path = _existing(hw.file, base, config_path, "hardware.file", lines)
        spec = load_target_file(file_path)
        file_params = spec["params"]
        target_name = target_name or spec["target"]
        energy_name = energy_name or spec["energy"]
        if not target_name:
            raise SimError(f"{file_path}: target: missing required key")
    origin = spec["from"]
    try:
        cls = get(str(target_name))
    except SimError as e:
        src, ls = origin.get("target", (file_path, {}))
        src, key, ls = (config_path, "hardware.target", lines) if hw.target else (src, "target", ls)
        raise SimError(f"{located(src, key, ls)}: {e}") from None
    params = {**file_params, **hw.params}
    try:
        p = cls.Params.model_validate(params)
    except ValidationError as e:
        bad = e.errors()[0]["loc"][0] if e.errors()[0]["loc"] else None
        # a field the config set, or a rule across fields (no field named) when the config set any
        if bad in hw.params or file_path is None or (bad is None and hw.params):
            raise validation_error(config_path, e, lines, prefix=("hardware", "params")) from None
        src, ls = origin.get(("params", bad), (file_path, spec["lines"]))  # a missing key: the file named
        raise validation_error(src, e, ls, prefix=("params",)) from None
    if not energy_name:
        raise SimError(f"{config_path}: hardware.energy: no energy table given (in the config or the target file)")
    if hw.energy or file_path is None:
        epath = _existing(str(energy_name), base, config_path, "hardware.energy", lines)
    else:
        src, ls = origin["energy"]
        epath = _existing(str(energy_name), src.parent, src, "energy", ls)
    energy = load_energy(epath)
    node = getattr(p, "node_nm", None)
    if node is not None and node != energy.node_nm:
        raise SimError(f"{epath}: node_nm: the energy table {energy.name!r} is for {energy.node_nm} nm but the "
                       f"target is at {node} nm")
    target = cls(p)
    # the parameters as the target resolved them (an FPGA's cores: fit is a number here), and what the
    # design takes of its device where the target models it
    resolved = {"target": cls.name, "file": str(hw.file) if hw.file else None, "energy": str(energy_name),
                "params": target.params.model_dump()}
    if getattr(target, "resources", None):
        resolved["resources"] = target.resources
    # each parameter's source: the target file's (its and its parents'), or the config that set it inline
    target.sources = {**spec.get("sources", {}),
                      **{k: f"{config_path}: hardware.params.{k}" for k in hw.params}}
    return target, energy.scaled(_static_scale(target)), resolved


__all__ = ["Costs", "Target", "build", "get", "load_target_file", "names", "register"]
