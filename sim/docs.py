"""The golden tables of the system pages in ``docs/systems/``, generated so that they cannot drift.

Every modelled system's page, ``docs/systems/<system>.md``, holds one block between the markers
``<!-- golden:begin -->`` and ``<!-- golden:end -->``.  The block is rendered here from the
committed golden file ``results/golden/<system>/paper_vs_sim.csv`` (``metric, paper, simulated,
rel_error, source``), plus the headline figures of a golden ``summary.json`` where
:data:`SUMMARY_ROWS` lists some.  Everything outside the markers is written by hand.

``python -m sim.docs`` rewrites every page's block (``make golden`` runs it after
:mod:`sim.golden`); ``python -m sim.docs --check`` changes nothing and exits 1 naming the pages
whose block differs from what the golden files give.  ``tests/test_docs.py`` asserts the same.

Formatting: a paper's figure as the golden file quotes it; a simulated figure at three significant
figures; the error (``rel_error``, simulated / paper - 1) as a signed percent at three significant
figures.  Metrics timed live on the machine that ran the reproduction (:data:`sim.golden.LIVE`,
Lamarr's speed ratio) are not model outputs: the table says "measured live, varies run to run"
instead of the golden run's figure.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

from models.errors import SimError
from sim.golden import GOLDEN, LIVE, ROOT
from sim.studies.base import PAPER_VS_SIM_COLUMNS as COLUMNS

DOCS = ROOT / "docs"
SYSTEMS_DIR = DOCS / "systems"

BEGIN = "<!-- golden:begin -->"
END = "<!-- golden:end -->"
LIVE_LABEL = "measured live, varies run to run"


# ---- numbers -------------------------------------------------------------------------------------


def sig3(x: float) -> str:
    """``x`` at three significant figures, trailing zeros kept, without an exponent between 1e-3
    and 1e7 (thousands separated by commas): 1.8042 -> '1.80', 1441.1 -> '1,440', 0.5013 -> '0.501'."""
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    r = float(f"{x:.3g}")  # rounded to 3 significant figures
    mag = math.floor(math.log10(abs(r)))
    if mag < -3 or mag >= 7:
        return f"{r:.2e}"
    if mag >= 2:
        return f"{r:,.0f}"
    return f"{r:.{2 - mag}f}"


def quoted(x: float) -> str:
    """A paper's figure as the golden file holds it (up to six significant figures): 5.0 -> '5',
    16.08 -> '16.08', 300.0 -> '300'."""
    x = float(x)
    if math.isnan(x):
        return "n/a"
    s = f"{x:g}"
    if "e" not in s and abs(x) >= 1000 and x == int(x):
        s = f"{int(x):,}"
    return s


def signed_percent(rel: float) -> str:
    """A relative error as a signed percent at three significant figures: 0.04896 -> '+4.90%'."""
    rel = float(rel)
    if math.isnan(rel):
        return "n/a"
    pct = rel * 100
    if pct == 0:
        return "0%"
    return f"{'+' if pct > 0 else '-'}{sig3(abs(pct))}%"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


# ---- tables --------------------------------------------------------------------------------------


def read_golden(system: str, golden: Path = GOLDEN) -> list[dict[str, str]]:
    """The rows of ``results/golden/<system>/paper_vs_sim.csv``."""
    path = golden / system / "paper_vs_sim.csv"
    if not path.exists():
        raise SimError(f"{path}: no golden paper_vs_sim.csv for {system!r} (run `make golden`)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise SimError(f"{path}: columns {reader.fieldnames}, expected {COLUMNS}")
        return list(reader)


def render_table(rows: list[dict[str, str]], live: set[str] = frozenset()) -> str:
    """A golden paper_vs_sim table as Markdown: metric | paper | simulated | error | source."""
    out = ["| metric | paper | simulated | error | source |", "|---|---:|---:|---:|---|"]
    for r in rows:
        if r["metric"] in live:
            sim, err = LIVE_LABEL, "n/a"
        else:
            sim, err = sig3(float(r["simulated"])), signed_percent(float(r["rel_error"]))
        out.append(f"| `{_cell(r['metric'])}` | {quoted(float(r['paper']))} | {sim} | {err} | {_cell(r['source'])} |")
    return "\n".join(out)


def _get(d: dict, path: str):
    for key in path.split("."):
        d = d[key]
    return d


def _pct(path: str) -> Callable[[dict], str]:
    return lambda s: f"{sig3(100 * _get(s, path))}%"


def _num(path: str) -> Callable[[dict], str]:
    return lambda s: sig3(_get(s, path))


def _int(path: str) -> Callable[[dict], str]:
    return lambda s: f"{int(_get(s, path)):,}"


def _d0(s: dict) -> str:
    w, e = s["d0_width_mev"], s["d0_width_err_mev"]
    return f"{sig3(w['detailed'])} +- {sig3(e['detailed'])} / {sig3(w['fast'])} +- {sig3(e['fast'])}"


# the headline figures of a golden summary.json shown on a system's page (label, formatter)
SUMMARY_ROWS: dict[str, list[tuple[str, Callable[[dict], str]]]] = {
    "lamarr": [
        ("held-out events (generator seed 2026)", _int("events")),
        ("efficiency bins compared", _int("efficiency_bins")),
        ("efficiency bins within 2 sigma", _pct("efficiency_bins_within_2sigma")),
        ("efficiency mean pull^2 per bin", _num("efficiency_chi2_per_bin")),
        ("median KS statistic, every compared distribution", _num("median_ks")),
        ("median Wasserstein distance, relative to the spread", _num("median_wasserstein_rel")),
        ("D0 -> K pi width, detailed / fast (MeV)", _d0),
        ("resolution-width bins within 2 sigma (long tracks)", _pct("resolution_width_bins_within_2sigma")),
        ("particles per event", _num("fractions.particles_per_event")),
        ("particles in acceptance", _pct("fractions.accepted")),
        ("particles reconstructed as a track", _pct("fractions.reconstructed")),
        ("reconstructed tracks in the muon preselection", _pct("fractions.muon_preselected")),
        ("reconstructed tracks with some RICH DLL not 0 (the RICH GAN's share)", _pct("fractions.hurdle.rich")),
        ("RICH DLL sign patterns in the held-out detailed sample", _int("fractions.sign_patterns.rich_signs")),
    ],
}


def render_summary(system: str, golden: Path = GOLDEN) -> str | None:
    """The headline figures of ``results/golden/<system>/summary.json`` (None if none are listed)."""
    rows = SUMMARY_ROWS.get(system)
    if not rows:
        return None
    path = golden / system / "summary.json"
    s = json.loads(path.read_text())
    out = ["| figure | golden run |", "|---|---:|"]
    for label, fmt in rows:
        try:
            value = fmt(s)
        except (KeyError, TypeError, ValueError) as e:
            raise SimError(f"{path}: no {label!r} ({e})") from None
        out.append(f"| {_cell(label)} | {value} |")
    return "\n".join(out)


def render_block(system: str, golden: Path = GOLDEN) -> str:
    """The text between a page's markers (without the markers), ending in a newline."""
    live = LIVE.get(system, set())
    rel = f"results/golden/{system}"
    parts = [
        f"<!-- generated by `python -m sim.docs` from {rel}/: do not edit by hand -->",
        render_table(read_golden(system, golden), live),
        "",
        (f"Golden file: [`{rel}/paper_vs_sim.csv`](../../{rel}/paper_vs_sim.csv) (`make golden` rewrites it; "
         "`tests/test_golden.py` reruns the reproduction against it)."),
    ]
    if live:
        parts[-1] += (" A metric marked \"" + LIVE_LABEL + "\" is timed on the machine that runs the "
                      "reproduction: the golden comparison checks only its sign.")
    summary = render_summary(system, golden)
    if summary:
        parts += ["", f"Headline figures of the same run ([`{rel}/summary.json`](../../{rel}/summary.json)):",
                  "", summary]
    return "\n".join(parts) + "\n"


# ---- pages ---------------------------------------------------------------------------------------


def golden_systems(golden: Path = GOLDEN) -> list[str]:
    """Every system with a golden paper_vs_sim.csv (the quickstart has a summary only)."""
    return sorted(p.parent.name for p in golden.glob("*/paper_vs_sim.csv"))


def page_path(system: str, docs: Path = DOCS) -> Path:
    return docs / "systems" / f"{system}.md"


_BLOCK = re.compile(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), re.DOTALL)


def extract_block(text: str, where: str = "page") -> str:
    """The text between the markers of a page (exactly one pair, in order)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise SimError(f"{where}: needs exactly one {BEGIN} and one {END} (on lines of their own)")
    m = _BLOCK.search(text)
    if not m:
        raise SimError(f"{where}: {BEGIN} must end its line and come before {END}")
    return m.group(1)


def replace_block(text: str, block: str, where: str = "page") -> str:
    """``text`` with the block between its markers replaced by ``block``."""
    extract_block(text, where)  # validates the markers
    return _BLOCK.sub(lambda _: f"{BEGIN}\n{block}{END}", text, count=1)


def update_page(system: str, docs: Path = DOCS, golden: Path = GOLDEN, write: bool = True) -> bool:
    """Bring one page's block up to date with its golden file; whether it changed."""
    path = page_path(system, docs)
    if not path.exists():
        raise SimError(f"{path}: no page for golden system {system!r} (write one with a {BEGIN} / {END} block)")
    text = path.read_text()
    new = replace_block(text, render_block(system, golden), str(path))
    if new != text and write:
        path.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    names = [a for a in argv if a != "--check"]
    try:
        known = golden_systems()
        for n in names:
            if n not in known:
                raise SimError(f"no golden system {n!r}; known: {', '.join(known)}")
        stale = []
        for system in names or known:
            if update_page(system, write=not check):
                stale.append(system)
                if not check:
                    print(f"wrote {page_path(system).relative_to(ROOT)}")
    except SimError as e:
        print(f"sim.docs: error: {e}", file=sys.stderr)
        return SimError.exit_code
    if check and stale:
        print("stale golden tables (run `python -m sim.docs`): "
              + ", ".join(str(page_path(s).relative_to(ROOT)) for s in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
