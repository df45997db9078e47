"""Energy: Accelergy-style reference tables applied to a target's action counts.

A table (``configs/energy/*.yaml``) lists, per component, the energy of each action in pJ per unit
(per MAC, per byte, per PE-cycle, ...), each with its source, and a static power in W.  A target
reports how many times each ``component.action`` happens per op; energy is counts x pJ, plus static
power x time.  This is the suite's one energy mechanism: a new target adds a table, not code.

Static power is the table's: each component's ``static_w`` (with its ``static_source``), times the
table's ``static_scale`` (1 as loaded; :func:`sim.targets.build` sets it to the target's
``static_scale``, e.g. ET-SoC-1's (V / v_ref)^exponent at its DVFS point), drawn over each op's time.
The time is the ``seconds`` the caller passes (the op's scheduled time), unless the target counts it
itself as ``<component>.second`` (seconds of the op during which that component draws its static
power: ET-SoC-1 reports its ops' own simulated seconds).  ``second`` is therefore not an action name
a table may use: a table gives a static power as ``static_w``, never as pJ per second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.errors import SimError
from sim.config import extends_path, load_yaml, located, validated


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pj: float = Field(ge=0, description="energy per unit, pJ")
    per: str = Field(description="the unit counted: MAC, byte, PE-cycle, op, ...")
    source: str = Field(min_length=1)


STATIC_COUNT = "second"  # ``<component>.second``: seconds of an op the component draws its static power


class Component(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    actions: dict[str, Action] = Field(default_factory=dict)
    static_w: float = Field(0.0, ge=0)
    static_source: str = ""

    @field_validator("actions")
    @classmethod
    def _no_static_action(cls, v):
        if STATIC_COUNT in v:
            raise ValueError(f"`{STATIC_COUNT}` is not an action: give the component's static power as static_w "
                             "(W) with its static_source")
        return v


class EnergyTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    node_nm: int = Field(gt=0)
    components: dict[str, Component]
    static_scale: float | dict[str, float] = Field(
        1.0, description="factor on the static_w: one for every component, or per component (unnamed: 1), at the "
        "target's operating point (set by sim.targets.build, not by a table file)")

    def pj(self, key: str) -> float:
        comp, _, action = key.partition(".")
        try:
            return self.components[comp].actions[action].pj
        except KeyError:
            raise SimError(f"energy table {self.name!r} has no entry for {key!r}") from None

    def scaled(self, static_scale: float | dict[str, float]) -> EnergyTable:
        """This table with its static power scaled by ``static_scale`` (the target's operating point):
        one factor for every component, or one per component (a chip whose rails follow the
        operating point differently); a component not named keeps its static power, and one the table
        lacks may only be switched off (factor 0)."""
        if isinstance(static_scale, dict):
            unknown = sorted(k for k, v in static_scale.items() if k not in self.components and v != 0)
            static_scale = {k: v for k, v in static_scale.items() if k in self.components}
            if unknown:
                raise SimError(f"energy table {self.name!r} has no component {', '.join(unknown)} to scale the "
                               f"static power of (components: {', '.join(self.components)})")
            if any(v < 0 for v in static_scale.values()):
                raise SimError(f"static power scale must not be negative: {static_scale}")
        return self if static_scale == self.static_scale else self.model_copy(update={"static_scale": static_scale})

    def _scale(self, comp: str) -> float:
        s = self.static_scale
        return float(s.get(comp, 1.0)) if isinstance(s, dict) else float(s)

    @property
    def static_w(self) -> float:
        """The static power the table gives, W, at its ``static_scale``."""
        return sum(c.static_w * self._scale(name) for name, c in self.components.items())

    @staticmethod
    def _static_key(key: str) -> str | None:
        """The component of a ``<component>.second`` count (seconds of static power), else None."""
        comp, _, action = key.partition(".")
        return comp if action == STATIC_COUNT else None

    def dynamic(self, counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Dynamic energy in pJ per component, per op: counts x pJ (``<component>.second`` counts excluded)."""
        out: dict[str, np.ndarray] = {}
        for key, n in counts.items():
            if self._static_key(key) is not None:
                continue
            comp = key.partition(".")[0]
            out[comp] = out.get(comp, 0) + np.asarray(n, dtype=np.float64) * self.pj(key)
        return out

    def static(self, counts: dict[str, np.ndarray], seconds: np.ndarray) -> dict[str, np.ndarray]:
        """Static energy in pJ per component with a static power, per op: static_w x static_scale x the op's
        ``seconds``, or x the target's own ``<component>.second`` count where it gives one."""
        own = {}
        for key, n in counts.items():
            comp = self._static_key(key)
            if comp is not None:
                if comp not in self.components:
                    raise SimError(f"energy table {self.name!r} has no component {comp!r} to draw the static "
                                   f"power counted as {key!r}")
                own[comp] = n
        out: dict[str, np.ndarray] = {}
        for comp, c in self.components.items():
            if c.static_w:
                t = own.get(comp, seconds)
                out[comp] = c.static_w * self._scale(comp) * np.asarray(t, dtype=np.float64) * 1e12
        return out

    def apply(self, counts: dict[str, np.ndarray], seconds: np.ndarray) -> dict[str, np.ndarray]:
        """Energy in pJ per component, per op: dynamic (counts x pJ) plus static (W x op time)."""
        out = self.dynamic(counts)
        for comp, e in self.static(counts, seconds).items():
            out[comp] = out.get(comp, 0) + e
        return {k: np.broadcast_to(v, np.shape(seconds)).astype(np.float64) for k, v in out.items()}


def load_energy(path: str | Path, _seen: tuple = ()) -> EnergyTable:
    """Load a table.  ``extends: other.yaml`` (relative to this file) starts from another table;
    this file's components replace or add actions of the same names."""
    path = Path(path)
    data, lines = load_yaml(path)
    if isinstance(data, dict) and "static_scale" in data:
        raise SimError(f"{located(path, 'static_scale', lines)}: set by the target at its operating point, "
                       "not by a table (give each component's static_w)")
    base_name = data.pop("extends", None)
    if base_name is not None:
        base = load_energy(extends_path(path, base_name, lines, _seen), _seen + (path.resolve(),)).model_dump()
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
