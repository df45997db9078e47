"""The study interface, its registry, the progress protocol and the paper-vs-simulation table."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

import pandas as pd

from models.errors import SimError

PAPER_VS_SIM_COLUMNS = ["metric", "paper", "simulated", "rel_error", "source"]


class Progress(Protocol):
    """One progress protocol for every study: what is being done, and, where the work is counted,
    how much of it is done out of how much (a bar; a spinner otherwise)."""

    def __call__(self, what: str, done: int | None = None, total: int | None = None) -> None: ...


def no_progress(what: str, done: int | None = None, total: int | None = None) -> None:
    return None


@dataclass
class Options:
    """What the command line may override for any study."""

    out: str | None = None
    fidelity: str | None = None


@dataclass
class StudyResult:
    """What a study's ``run()`` returns.

    ``tables``: named frames (``write()`` decides their files); ``paper_vs_sim``: the paper's figures
    against the simulated ones (:func:`paper_vs_sim`), empty where the study compares with nothing
    published; ``summary``: headline figures (JSON-able); ``out``: the default output folder;
    ``data``: whatever else the study's own ``write()`` needs."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    paper_vs_sim: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAPER_VS_SIM_COLUMNS))
    summary: dict = field(default_factory=dict)
    out: Path = Path("results")
    title: str = ""
    data: Any = None


class Study:
    """One kind of study.  Subclasses set ``kind`` and ``schema`` and implement ``run`` and ``write``."""

    kind: str = ""
    schema: type | None = None  # the pydantic model of the study's file
    #: whether :meth:`spans` gives a timeline (``sim run --trace`` writes it as trace.json)
    traceable: bool = False

    def run(self, path: Path, options: Options, progress: Progress = no_progress) -> StudyResult:
        raise NotImplementedError

    def write(self, out: Path, result: StudyResult) -> list[str]:
        """Write the result under ``out``; the names written.  Default: every table as CSV and the
        paper-vs-simulation table (when it has rows)."""
        out.mkdir(parents=True, exist_ok=True)
        names = []
        for name, df in result.tables.items():
            df.to_csv(out / f"{name}.csv", index=False)
            names.append(f"{name}.csv")
        if len(result.paper_vs_sim):
            result.paper_vs_sim.to_csv(out / "paper_vs_sim.csv", index=False)
            names.append("paper_vs_sim.csv")
        return names

    def spans(self, result: StudyResult) -> list:
        """The result's timeline as :class:`sim.engine.trace.Span` (for ``--trace``)."""
        raise NotImplementedError

    def print(self, result: StudyResult, console) -> None:
        """What the terminal shows: the paper-vs-simulation table where there is one."""
        if len(result.paper_vs_sim):
            print_paper_vs_sim(console, result.title or f"{self.kind}: paper vs simulation", result.paper_vs_sim)


def paper_vs_sim(rows: Iterable[dict]) -> pd.DataFrame:
    """The one paper-vs-simulation table: each row's ``metric``, ``paper``, ``simulated`` and
    ``source``; ``rel_error`` = (simulated - paper) / paper."""
    out = [{"metric": r["metric"], "paper": r["paper"], "simulated": r["simulated"],
            "rel_error": (r["simulated"] - r["paper"]) / r["paper"], "source": r["source"]} for r in rows]
    return pd.DataFrame(out, columns=PAPER_VS_SIM_COLUMNS)


def print_paper_vs_sim(console, title: str, metrics: pd.DataFrame) -> None:
    from sim.tables import rich_table

    rows = [[r["metric"], f"{r['paper']:.3g}", f"{r['simulated']:.3g}", f"{r['rel_error']:+.1%}"]
            for _, r in metrics.iterrows()]
    console.print(rich_table(title, ["metric", "paper", "simulated", "rel. error"], rows,
                             right={"paper", "simulated", "rel. error"}), crop=False)


# ---------------------------------------------------------------------------------- registry

_REGISTRY: dict[str, str | type[Study]] = {}


def register(kind: str, study: str | type[Study]) -> None:
    """Register a study class (or a lazy ``"module:Class"`` reference) under a ``study:`` value."""
    if not kind or not isinstance(kind, str):
        raise ValueError(f"a study kind must be a non-empty string, got {kind!r}")
    _REGISTRY[kind] = study


def unregister(kind: str) -> None:
    _REGISTRY.pop(kind, None)


def kinds() -> list[str]:
    return list(_REGISTRY)


def get(kind: str) -> Study:
    """An instance of the study registered as ``kind``; an unknown kind is a SimError naming the valid ones."""
    ref = _REGISTRY.get(kind)
    if ref is None:
        raise SimError(f"unknown study {kind!r}; valid kinds: {', '.join(kinds())}")
    if isinstance(ref, str):
        mod, _, cls = ref.partition(":")
        ref = _REGISTRY[kind] = getattr(importlib.import_module(mod), cls)
    return ref()


def kind_of(data: Any, path: Path, lines: dict | None = None) -> str:
    """The ``study:`` value of a config mapping (``run`` without the key), checked against the registry."""
    from sim.config import located

    if not isinstance(data, dict):
        raise SimError(f"{path}: expected a mapping at the top level")
    kind = data.get("study", "run")
    if not isinstance(kind, str) or kind not in _REGISTRY:
        raise SimError(f"{located(path, 'study', lines or {})}: unknown study {kind!r}; valid kinds: "
                       f"{', '.join(kinds())}")
    return kind


