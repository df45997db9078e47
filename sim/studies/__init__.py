"""Studies: the kinds of work `sim run` does over the spine, chosen by a config's top-level `study:` key.

A study is a class with one interface (:class:`sim.studies.base.Study`): the schema of its file
(its ``run()`` validates the file against it before any work), ``run()`` returning a :class:`~sim.studies.base.StudyResult` (tables, paper-vs-simulation rows,
a summary), ``write()`` and ``print()``.  The registry maps each ``study:`` value to its class; a
file without the key is a plain run.  Adding a system: a module here with a ``Study`` subclass and
one :func:`register` line below (or a call from anywhere, as the tests do); nothing in the CLI.
"""

from sim.studies.base import (
    PAPER_VS_SIM_COLUMNS,
    Study,
    StudyResult,
    get,
    kind_of,
    kinds,
    paper_vs_sim,
    register,
    unregister,
)

# the built-in studies, imported only when asked for (the CLI stays fast)
register("run", "sim.studies.plain:PlainRun")
register("reproduce", "sim.studies.reproduce:Reproduce")
register("easyspec", "sim.studies.easyspec:EasySpec")
register("lamarr", "sim.studies.lamarr.validation:LamarrValidation")
register("lamarr_hw", "sim.studies.lamarr.hardware:LamarrHardware")

__all__ = ["PAPER_VS_SIM_COLUMNS", "Study", "StudyResult", "get", "kind_of", "kinds", "paper_vs_sim", "register",
           "unregister"]
