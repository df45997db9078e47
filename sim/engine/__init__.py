"""The engine: every timeline of the suite.

- :mod:`sim.engine.tiles`: ops on one device as tiles through DMA, a staging buffer and compute
  (SimPy, :func:`simulate`; closed form, :func:`analytic`).
- :mod:`sim.engine.graph`: a task graph over named resources (devices, links, host threads,
  GPUs): multi-GPU decoding (:mod:`sim.multigpu`) and Lamarr's host/link/device pipeline.
- :mod:`sim.engine.schedule`: identical layers replicated, a generation's decode steps costed by
  class and chunk, sampled and interpolated within a checked bound.
- :mod:`sim.engine.host`: a runtime's host as its own stream beside the device (a step's ops
  dispatched and run; overlapped on a GPU, back to back on a CPU).
- :mod:`sim.engine.trace`: any timeline as a Chrome/Perfetto trace (``sim run --trace``).
"""

from sim.engine.graph import TaskGraph
from sim.engine.tiles import Timeline, analytic, simulate

__all__ = ["TaskGraph", "Timeline", "analytic", "simulate"]
