"""Energy: Accelergy-style reference tables applied to a target's action counts.

A table (``configs/energy/*.yaml``) lists, per component, the energy of each action in pJ per unit
(per MAC, per byte, per PE-cycle, ...), each with its source, and a static power in W.  A target
reports how many times each ``component.action`` happens per op; energy is counts x pJ, plus static
power x time.  This is the suite's one energy mechanism: a new target adds a table, not code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.errors import SimError
from sim.config import load_yaml, located, validated


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pj: float = Field(ge=0, description="energy per unit, pJ")
    per: str = Field(description="the unit counted: MAC, byte, PE-cycle, op, ...")
    source: str = Field(min_length=1)


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    actions: dict[str, Action] = Field(default_factory=dict)
    static_w: float = Field(0.0, ge=0)
    static_source: str = ""


class EnergyTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    node_nm: int = Field(gt=0)
    components: dict[str, Component]

    def pj(self, key: str) -> float:
        comp, _, action = key.partition(".")
        try:
            return self.components[comp].actions[action].pj
        except KeyError:
            raise SimError(f"energy table {self.name!r} has no entry for {key!r}") from None

    @property
    def static_w(self) -> float:
        return sum(c.static_w for c in self.components.values())

    def apply(self, counts: dict[str, np.ndarray], seconds: np.ndarray) -> dict[str, np.ndarray]:
        """Energy in pJ per component, per op: dynamic (counts x pJ) plus static (W x op time)."""
        out: dict[str, np.ndarray] = {}
        for key, n in counts.items():
            comp = key.partition(".")[0]
            out[comp] = out.get(comp, 0) + np.asarray(n, dtype=np.float64) * self.pj(key)
        for comp, c in self.components.items():
            if c.static_w:
                out[comp] = out.get(comp, 0) + c.static_w * np.asarray(seconds, dtype=np.float64) * 1e12
        return {k: np.broadcast_to(v, np.shape(seconds)).astype(np.float64) for k, v in out.items()}


def load_energy(path: str | Path, _seen: tuple = ()) -> EnergyTable:
    """Load a table.  ``extends: other.yaml`` (relative to this file) starts from another table;
    this file's components replace or add actions of the same names."""
    path = Path(path)
    data, lines = load_yaml(path)
    base_name = data.pop("extends", None)
    if base_name is not None:
        where = located(path, "extends", lines)
        base_path = path.parent / str(base_name)
        if not base_path.exists():
            raise SimError(f"{where}: no such file {base_name!r}")
        if base_path.resolve() in _seen + (path.resolve(),):
            raise SimError(f"{where}: {base_name!r} extends itself (a cycle)")
        base = load_energy(base_path, _seen + (path.resolve(),)).model_dump()
        comps = base["components"]
        own = data.get("components") or {}
        if not isinstance(own, dict) or not all(isinstance(c, dict) and isinstance(c.get("actions", {}), dict)
                                                for c in own.values()):
            raise SimError(f"{located(path, 'components', lines)}: expected a mapping of "
                           "components, each a mapping with an `actions` mapping")
        for name, comp in own.items():
            merged = dict(comps.get(name, {"actions": {}}))
            merged.update({k: v for k, v in comp.items() if k != "actions"})
            merged["actions"] = {**merged.get("actions", {}), **(comp.get("actions") or {})}
            comps[name] = merged
        data = {**base, **{k: v for k, v in data.items() if k != "components"}, "components": comps}
    return validated(EnergyTable, data, path, lines)
