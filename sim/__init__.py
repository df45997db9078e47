"""mlhw-sim: models of the hardware that runs ML workloads.

The package layout follows ``../shared/DESIGN.md``: ``workloads`` (model zoo and traces),
``models`` (numerics), ``hw`` (Amaranth RTL), ``sim`` (config, engine, targets, CLI).
"""

__version__ = "0.1.0"
