from sim.cli import _entry

_entry()
