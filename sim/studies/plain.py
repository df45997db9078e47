"""The default study: one run of a model on a target (``sim run configs/quickstart.yaml``)."""

from __future__ import annotations

from pathlib import Path

from sim.studies.base import Options, Progress, Study, StudyResult, no_progress


class PlainRun(Study):
    kind = "run"
    traceable = True

    @property
    def schema(self):
        from sim.config import Config

        return Config

    def run(self, path: Path, options: Options, progress: Progress = no_progress) -> StudyResult:
        from sim.run import run

        result = run(path, fidelity=options.fidelity, progress=lambda m: progress(m))
        out = Path(options.out or result.config.run.out or Path("results") / result.summary["name"])
        return StudyResult(tables={"ops": result.ops}, summary=result.summary, out=out, data=result)

    def write(self, out: Path, result: StudyResult) -> list[str]:
        from sim.report import write

        write(result.data, out)
        return ["ops.parquet", "summary.json", "report.html"]

    def spans(self, result: StudyResult) -> list:
        from sim.engine.trace import run_spans

        spans = run_spans(result.data.ops, result.summary)
        tl = result.data.timeline
        if tl is not None:  # a multi-device run: its pipeline, one row per stage (its devices) and link
            tl.run()
            p = result.summary["parallel"]
            spans += tl.spans(f"devices: tp {p['tp']} x pp {p['pp']} x dp {p['dp']} (replica 0; prefill, "
                              "then the first decode steps)")
        return spans

    def print(self, result: StudyResult, console) -> None:
        from sim.report import print_summary

        print_summary(result.summary, console)
