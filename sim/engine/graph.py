"""A task graph over named resources, scheduled with SimPy.

A task names the resources it holds (all of them at once, for its whole duration), the tasks it
follows, and optionally a time before which it cannot start.  A task starts when the tasks it
follows are done, its start time has come and all its resources are free; requests are served in
the order they are made (tasks made ready at the same instant, in the order they were added), so
tasks on one resource serialize.  Durations are in any one unit (seconds, or integer nanoseconds
for exact arithmetic).  :meth:`TaskGraph.spans` gives the timeline for :mod:`sim.engine.trace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from models.errors import SimError


@dataclass
class Task:
    name: str
    resources: tuple[str, ...]
    duration: float
    after: tuple[str, ...] = ()
    cat: str = "compute"
    not_before: float = 0


@dataclass
class TaskGraph:
    tasks: list[Task] = field(default_factory=list)
    start: dict[str, float] = field(default_factory=dict)
    end: dict[str, float] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set, init=False, repr=False)

    def add(self, name: str, resources, duration, after=(), cat: str = "compute", not_before=0) -> str:
        if name in self._names or name in self.end:
            raise SimError(f"duplicate task {name!r}")
        self.tasks.append(Task(name, tuple(resources), duration, tuple(a for a in after if a), cat, not_before))
        self._names.add(name)
        return name

    def run(self) -> float:
        """Schedule every task; the makespan (0 for an empty graph)."""
        env = simpy.Environment()
        names = {r for t in self.tasks for r in t.resources}
        res = {r: simpy.Resource(env, capacity=1) for r in sorted(names)}
        done = {t.name: env.event() for t in self.tasks}
        unknown = {a for t in self.tasks for a in t.after} - set(done)
        if unknown:
            raise SimError(f"a task follows unknown task(s): {', '.join(sorted(unknown))}")

        def proc(t: Task):
            if t.not_before:
                yield env.timeout(t.not_before)
            if t.after:
                yield simpy.AllOf(env, [done[a] for a in t.after])
            reqs = [res[r].request() for r in t.resources]
            if reqs:
                yield simpy.AllOf(env, reqs)
            self.start[t.name] = env.now
            yield env.timeout(t.duration)
            self.end[t.name] = env.now
            for r, q in zip(t.resources, reqs):
                res[r].release(q)
            done[t.name].succeed()

        for t in self.tasks:
            env.process(proc(t))
        env.run()
        if len(self.end) != len(self.tasks):
            raise SimError("task graph deadlock: a task waits on one that never runs")
        return max(self.end.values()) if self.end else 0

    def busy(self) -> dict[str, float]:
        """Time each resource spent serving tasks."""
        out: dict[str, float] = {}
        for t in self.tasks:
            for r in t.resources:
                out[r] = out.get(r, 0) + t.duration
        return out

    def spans(self, process: str = "run", seconds_per_unit: float = 1.0) -> list:
        """The scheduled tasks as trace spans, one per task and resource (after :meth:`run`)."""
        from sim.engine.trace import Span

        return [Span(t.name, self.start[t.name] * seconds_per_unit, t.duration * seconds_per_unit, r, process, t.cat)
                for t in self.tasks for r in t.resources]
