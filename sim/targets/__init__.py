"""Target registry.  A target module registers its class with :func:`register`; configs name it.

``build(hardware, base)`` resolves a config's ``hardware`` section: a target file
(``configs/targets/*.yaml``: ``target``, ``energy``, ``params``, ``sources``) and/or inline
``params`` overriding it, validated by the target's own parameter schema.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import ValidationError

from models.errors import SimError
from sim.config import CONFIGS_DIR, Hardware, load_yaml, located, resolve_path, validation_error
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


def build(hw: Hardware, config_path: Path, lines: dict | None = None) -> tuple[Target, EnergyTable, dict]:
    """The target, its energy table and the resolved hardware description of a config."""
    base = config_path.parent
    file_params: dict = {}
    target_name, energy_name = hw.target, hw.energy
    file_path, file_lines = None, {}
    if hw.file:
        file_path = _existing(hw.file, base, config_path, "hardware.file", lines or {})
        data, file_lines = load_yaml(file_path)
        unknown = set(data) - {"target", "energy", "params", "sources", "description"}
        if unknown:
            key = sorted(unknown)[0]
            raise SimError(f"{located(file_path, (key,), file_lines)}: unknown key")
        if not isinstance(data.get("params", {}), dict):
            raise SimError(f"{file_path}: params: expected a mapping")
        file_params = data.get("params") or {}
        target_name = target_name or data.get("target")
        energy_name = energy_name or data.get("energy")
        if not target_name:
            raise SimError(f"{file_path}: target: missing required key")
    try:
        cls = get(str(target_name))
    except SimError as e:
        src, key, ls = (config_path, "hardware.target", lines or {}) if hw.target else (file_path, "target", file_lines)
        raise SimError(f"{located(src, key, ls)}: {e}") from None
    params = {**file_params, **hw.params}
    try:
        p = cls.Params.model_validate(params)
    except ValidationError as e:
        bad = e.errors()[0]["loc"][0] if e.errors()[0]["loc"] else None
        if bad in hw.params or file_path is None:
            raise validation_error(config_path, e, lines or {}, prefix=("hardware", "params")) from None
        raise validation_error(file_path, e, file_lines, prefix=("params",)) from None
    if not energy_name:
        raise SimError(f"{config_path}: hardware.energy: no energy table given (in the config or the target file)")
    if hw.energy or file_path is None:
        epath = _existing(str(energy_name), base, config_path, "hardware.energy", lines or {})
    else:
        epath = _existing(str(energy_name), file_path.parent, file_path, "energy", file_lines)
    energy = load_energy(epath)
    node = getattr(p, "node_nm", None)
    if node is not None and node != energy.node_nm:
        raise SimError(f"{epath}: node_nm: the energy table {energy.name!r} is for {energy.node_nm} nm but the "
                       f"target is at {node} nm")
    resolved = {"target": cls.name, "file": str(hw.file) if hw.file else None, "energy": str(energy_name),
                "params": p.model_dump()}
    return cls(p), energy, resolved


__all__ = ["Costs", "Target", "build", "get", "names", "register"]
