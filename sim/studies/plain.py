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

        return run_spans(result.data.ops, result.summary)

    def print(self, result: StudyResult, console) -> None:
        from sim.report import print_summary

        print_summary(result.summary, console)
