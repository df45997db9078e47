"""The host as its own stream beside the device: a step's ops dispatched one after another by the
host, each run by the device once the host has dispatched it and the device is free.

With ``overlap`` (a GPU: launches are queued and return at once) op ``i`` is dispatched at
``h_i = fixed + sum(host[:i+1])`` and ends on the device at ``d_i = max(h_i, d_{i-1}) + dev_i``:
the device idles when the host falls behind, the host runs ahead while the device is busy (an
unbounded queue).  The recurrence has the closed form ``d_i = S_i + max_{j<=i}(h_j - S_{j-1})``
(``S``: cumulative device time), evaluated in one pass; :func:`host_device_graph` builds the same
schedule as a :class:`~sim.engine.graph.TaskGraph` (two resources, a task per op and stream), the
reference the tests compare it with.  Without overlap (a CPU: the host's threads run the kernels)
the step is host and device time back to back.  ``fixed`` (module calls, the framework's Python,
sampling) is host time before the first op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.engine.graph import TaskGraph


@dataclass
class HostStep:
    seconds: float  # the step, host and device together
    device_s: float  # device busy time
    host_s: float  # host busy time
    device_idle_s: float  # the device waiting for the host within the step

    @property
    def host_bound(self) -> bool:
        return self.host_s > self.device_s


def host_device(host_s, device_s, fixed_s: float = 0.0, overlap: bool = True) -> HostStep:
    """One step's time with the host dispatching ``host_s[i]`` per op and the device running
    ``device_s[i]`` per op (seconds, in op order)."""
    h = np.asarray(host_s, dtype=np.float64)
    d = np.asarray(device_s, dtype=np.float64)
    dev, host = float(d.sum()), float(h.sum()) + fixed_s
    if not overlap or not len(d):
        total = host + dev
        return HostStep(total, dev, host, total - dev)
    issued = fixed_s + np.cumsum(h)
    done_before = np.concatenate([[0.0], np.cumsum(d)[:-1]])
    end = float(np.max(issued - done_before) + dev)
    end = max(end, dev)
    return HostStep(end, dev, host, end - dev)


def host_device_graph(host_s, device_s, fixed_s: float = 0.0) -> TaskGraph:
    """The overlapped schedule as a task graph (the reference for :func:`host_device`)."""
    g = TaskGraph()
    prev_h = prev_d = None
    if fixed_s:
        prev_h = g.add("host:step", ["host"], fixed_s, cat="host")
    for i, (h, d) in enumerate(zip(host_s, device_s)):
        hi = g.add(f"host:{i}", ["host"], h, after=[prev_h] if prev_h else [], cat="host")
        prev_d = g.add(f"dev:{i}", ["device"], d, after=[hi] + ([prev_d] if prev_d else []))
        prev_h = hi
    return g


__all__ = ["HostStep", "host_device", "host_device_graph"]
