"""Tables for the terminal, a pipe or a script: nothing is ever cut.

On a terminal, a rich table whose columns are at least as wide as their longest cell (a narrow
terminal wraps the line; it never drops characters); on a pipe, the same table at its natural width;
``--format csv`` or ``json`` for a script to read whole.
"""

from __future__ import annotations

import sys

import pandas as pd

FORMATS = ("table", "csv", "json")


def console():
    """A rich console on stdout; off a terminal its width is unbounded (a pipe gets every character)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=100_000)


def rich_table(title: str | None, columns: list[str], rows: list[list[str]], right: set[str] = frozenset(),
               show_header: bool = True):
    """A rich Table whose columns never shrink below their longest cell."""
    from rich.table import Table

    t = Table(title=title, show_header=show_header)
    for i, c in enumerate(columns):
        width = max([len(c) if show_header else 0] + [len(str(r[i])) for r in rows])
        t.add_column(c, justify="right" if c in right else "left", min_width=width, no_wrap=True)
    for r in rows:
        t.add_row(*map(str, r))
    return t


def emit(df: pd.DataFrame, fmt: str, title: str | None = None, formats: dict | None = None,
         right: set[str] = frozenset(), out=None) -> None:
    """Print ``df`` as a table (cells through ``formats[column]``), CSV or JSON records."""
    out = out or console()
    if fmt == "csv":
        print(df.to_csv(index=False), end="", file=sys.stdout)
    elif fmt == "json":
        print(df.to_json(orient="records", indent=1), file=sys.stdout)
    else:
        fmts = formats or {}
        rows = [[fmts.get(c, str)(v) for c, v in r.items()] for _, r in df.iterrows()]
        out.print(rich_table(title, list(df.columns), rows, right), crop=False)
