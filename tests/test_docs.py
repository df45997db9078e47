"""docs/ stays true: every golden system has a page whose golden table is what `sim.docs` renders from
the committed golden file; the trace-columns table lists every column; links, paths and `sim`
commands in the pages resolve. No simulation runs here."""

import re
import shlex
from pathlib import Path

import pytest

from models.errors import SimError
from sim import docs
from workloads.schema import COLUMNS

ROOT = docs.ROOT
PAGES = sorted(docs.DOCS.rglob("*.md")) + [ROOT / "README.md"]  # links, paths and commands: the README's too
SYSTEMS = docs.golden_systems()


# ---- golden tables -------------------------------------------------------------------------------


def test_every_golden_system_has_a_page():
    assert {"apmm", "bitmod", "easyspec", "etsoc", "lamarr", "matmulfree"} <= set(SYSTEMS)
    have = {p.parent.name for p in docs.GOLDEN.glob("*/paper_vs_sim.csv")}
    assert set(SYSTEMS) == have
    missing = [s for s in SYSTEMS if not docs.page_path(s).exists()]
    assert not missing, f"no docs/systems/<system>.md for {missing}"


@pytest.mark.parametrize("system", SYSTEMS)
def test_golden_block_equals_the_golden_file(system):
    page = docs.page_path(system)
    block = docs.extract_block(page.read_text(), str(page))
    assert block == docs.render_block(system), f"{page} is stale: run `python -m sim.docs`"


def test_check_mode_reports_a_stale_page_and_rewrite_fixes_it(tmp_path):
    (tmp_path / "systems").mkdir()
    page = tmp_path / "systems" / "bitmod.md"
    page.write_text(f"# BitMoD\n\nbefore\n\n{docs.BEGIN}\n| old | table |\n{docs.END}\n\nafter\n")
    assert docs.update_page("bitmod", docs=tmp_path, write=False)
    assert "| old | table |" in page.read_text()
    assert docs.update_page("bitmod", docs=tmp_path)
    text = page.read_text()
    assert text.startswith("# BitMoD\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert docs.extract_block(text) == docs.render_block("bitmod")
    assert not docs.update_page("bitmod", docs=tmp_path)  # idempotent


def test_markers_are_required(tmp_path):
    with pytest.raises(SimError, match="exactly one"):
        docs.extract_block("no markers here")
    with pytest.raises(SimError, match="exactly one"):
        docs.extract_block(f"{docs.BEGIN}\n{docs.END}\n{docs.END}\n")
    with pytest.raises(SimError, match="before"):
        docs.extract_block(f"{docs.END}\n{docs.BEGIN}\n")
    with pytest.raises(SimError, match="no page"):
        docs.update_page("bitmod", docs=tmp_path)


def test_number_formats():
    assert [docs.sig3(x) for x in (1.8042088, 0.5013399, 37.734, 1441.098, 5451.0, 96.145, 0.0032, 2e-5, 0)] == [
        "1.80", "0.501", "37.7", "1,440", "5,450", "96.1", "0.00320", "2.00e-05", "0"]
    assert [docs.quoted(x) for x in (5.0, 16.08, 300.0, 0.07, 1.99)] == ["5", "16.08", "300", "0.07", "1.99"]
    assert [docs.signed_percent(r) for r in (0.04895, -0.1344, 3.5997, 88.62, -0.0034, 0.0)] == [
        "+4.90%", "-13.4%", "+360%", "+8,860%", "-0.340%", "0%"]


def test_table_rows_and_the_live_metric():
    rows = [{"metric": "speedup_detector_step", "paper": "100", "simulated": "96.1451", "rel_error": "-0.0385",
             "source": "a | b"},
            {"metric": "x", "paper": "2.0", "simulated": "2.2", "rel_error": "0.1", "source": "s"}]
    table = docs.render_table(rows, live={"speedup_detector_step"}).splitlines()
    assert table[0] == "| metric | paper | simulated | error | source |"
    assert table[2] == f"| `speedup_detector_step` | 100 | {docs.LIVE_LABEL} | n/a | a \\| b |"
    assert table[3] == "| `x` | 2 | 2.20 | +10.0% | s |"
    # Lamarr's page: the live ratio is labelled, its golden value is not shown as a model output
    lamarr = docs.render_block("lamarr")
    assert docs.LIVE_LABEL in lamarr and "96.1" not in lamarr


def test_every_golden_row_is_rendered():
    for system in SYSTEMS:
        block = docs.render_block(system)
        for row in docs.read_golden(system):
            assert f"| `{row['metric']}` |" in block, (system, row["metric"])


# ---- the rest of docs/ ---------------------------------------------------------------------------


def test_workloads_page_documents_every_trace_column():
    text = (docs.DOCS / "workloads.md").read_text()
    assert "### Trace columns" in text
    table = text.split("### Trace columns", 1)[1].split("###", 1)[0]
    for col in COLUMNS:
        assert f"`{col}`" in table, col


def _prose(text: str) -> str:
    """The page without its fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for m in re.finditer(r"^#{1,6} (.+)$", _prose(path.read_text()), re.MULTILINE):
        s = _slug(m.group(1))
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_relative_links_resolve():
    assert PAGES, "no pages under docs/"
    bad = []
    for page in PAGES:
        for target in LINK.findall(_prose(page.read_text())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} -> {target}"
            if not dest.exists():
                bad.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                bad.append(f"{where}: no heading #{anchor}")
    assert not bad, "\n".join(bad)


ROOMS = ("sim/", "models/", "hw/", "configs/", "benchmarks/", "scripts/", "workloads/", "tests/", "docs/",
         "results/golden/", "results/validation/")


def _expand(word: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", word)
    if not m:
        return [word]
    return [x for alt in m.group(1).split(",") for x in _expand(word[:m.start()] + alt + word[m.end():])]


def test_repository_paths_in_the_pages_exist():
    """Every file or folder of the repository that a page names (in code) exists; run outputs aside."""
    bad = []
    for page in PAGES:
        text = page.read_text()
        code = re.findall(r"^```.*?^```", text, flags=re.DOTALL | re.MULTILINE) + re.findall(r"`([^`\n]+)`", _prose(text))
        for span in code:
            for word in re.split(r"[\s=]+", span):
                word = word.strip("'\"(),;:")
                if not word.startswith(ROOMS) or "<" in word or "*" in word:
                    continue
                for path in _expand(word):
                    if not (ROOT / path).exists():
                        bad.append(f"{page.relative_to(ROOT)}: {path}")
    assert not bad, "\n".join(bad)


def _commands(prefix: str):
    for page in PAGES:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(), flags=re.DOTALL | re.MULTILINE):
            for line in block.splitlines():
                line = line.split(" # ")[0].strip()
                if line.startswith(prefix):
                    yield page, shlex.split(line)[1:]


def test_sim_commands_in_the_pages_parse():
    """Every `.venv/bin/sim ...` line of a page is a valid command line (parsed, not run)."""
    from sim.cli import build_parser

    seen = 0
    for page, argv in _commands(".venv/bin/sim "):
        seen += 1
        try:
            build_parser().parse_args(argv)
        except SimError as e:
            pytest.fail(f"{page.relative_to(ROOT)}: sim {' '.join(argv)}: {e}")
    assert seen >= 15


def test_python_modules_in_the_pages_exist():
    import importlib.util

    for page, argv in _commands(".venv/bin/python -m "):
        assert importlib.util.find_spec(argv[1]) is not None, f"{page.relative_to(ROOT)}: no module {argv[1]}"
