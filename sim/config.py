"""Run configs: one YAML file, validated against a schema before any work.

A config has three sections::

    workload:            # what runs
      model: Llama-2-7B  # a zoo model
      batch: 1
      prompt: 256        # prompt tokens (prefill)
      decode_tokens: 20  # tokens generated after the prompt (0: prefill only)
      dtype: fp16        # storage dtype of weights and activations in the trace
      weight_bits: 16    # precision the hardware runs weights at (default: the dtype's)
      weight_storage_bits: 16   # bits per weight in memory, metadata included (default: weight_bits)
      act_bits: 16
      kv_bits: 16        # KV-cache precision (default: act_bits)
      lora:              # LoRA adapters (default: none)
        rank: 16
        targets: [q_proj, v_proj]   # projections of every layer (module leaf names of the model)
        mode: separate   # separate (two low-rank matmuls beside each projection) | merged (in W)
        alpha: 32        # scaling = alpha / rank (default: 1); no effect on cost
    hardware:            # where it runs
      file: targets/bitmod_fp16_baseline.yaml   # a target file (relative to this file or to configs/)
      params: {...}      # overrides of the file's parameters (or the whole set, with `target:`)
    run:
      out: results/quickstart
      seed: 0
      fidelity: simpy    # simpy (discrete-event) | analytic (closed form, for sweeps)

Every mistake is one :class:`SimError` line naming the file, the key path, the line where known,
and what was expected.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.errors import SimError

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Lora(_Strict):
    """LoRA adapters on the ``targets`` projections of every layer (checked against the model)."""

    rank: int = Field(gt=0)
    targets: list[str] = Field(min_length=1, description="projection names, e.g. q_proj, v_proj")
    mode: Literal["separate", "merged"] = "separate"
    alpha: float | None = Field(None, gt=0, description="scaling = alpha / rank (default: 1)")


class Workload(_Strict):
    model: str
    batch: int = Field(1, gt=0)
    prompt: int = Field(gt=0, description="prompt tokens")
    decode_tokens: int = Field(0, ge=0, description="tokens generated after the prompt")
    dtype: Literal["fp16", "bf16", "fp32"] = "fp16"
    weight_bits: int | None = Field(None, gt=0, le=32)
    weight_storage_bits: float | None = Field(None, gt=0, le=32, description="bits per weight in memory, "
                                              "per-group metadata included (default: weight_bits)")
    act_bits: int | None = Field(None, gt=0, le=32)
    kv_bits: int | None = Field(None, gt=0, le=32, description="KV-cache precision (default: act_bits)")
    lora: Lora | None = None
    routing_skew: float = Field(0.0, ge=0, le=8, description="a mixture of experts' routing policy: tokens go to "
                                "expert e in proportion to (e + 1) ** -routing_skew (0: uniform; "
                                "workloads.tracer.expert_loads)")

    @property
    def storage_bits(self) -> int:
        return 32 if self.dtype == "fp32" else 16

    @property
    def wbits(self) -> int:
        return self.weight_bits or self.storage_bits

    @property
    def abits(self) -> int:
        return self.act_bits or self.storage_bits

    @property
    def kvbits(self) -> int:
        return self.kv_bits or self.abits

    @property
    def wsbits(self) -> float:
        return self.weight_storage_bits or self.wbits

    @property
    def precision(self):
        """The :class:`sim.targets.parts.Precision` every cost of this workload is priced at."""
        from sim.targets.parts import Precision

        return Precision(self.wbits, self.abits, self.kvbits, self.wsbits)


class Hardware(_Strict):
    target: str | None = None
    file: str | None = None
    energy: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self):
        if not self.target and not self.file:
            raise ValueError("needs `target` (a target name) or `file` (a target file)")
        return self


class Run(_Strict):
    out: str | None = None
    seed: int = 0
    fidelity: Literal["simpy", "analytic"] = "simpy"


class Parallel(_Strict):
    """How devices share the model (``sim.parallel``): ``tp`` Megatron-style tensor parallelism
    (column-parallel q/k/v/gate/up/head, row-parallel o/down, attention by heads; an all-reduce after
    each row-parallel projection, an all-gather of the logits); ``pp`` pipeline stages (contiguous
    layers, activations sent point to point, ``micro_batches`` in flight); ``ep`` expert parallelism
    (a mixture of experts' experts spread whole over the tensor-parallel group, tokens dispatched and
    combined by all-to-all); ``dp`` data-parallel replicas (the batch split between them).  Devices:
    tp x pp x dp, tensor-parallel ranks innermost (on one node when they fit)."""

    tp: int = Field(1, ge=1, le=1024)
    pp: int = Field(1, ge=1, le=1024)
    ep: int = Field(1, ge=1, le=1024)
    dp: int = Field(1, ge=1, le=1 << 20)
    micro_batches: int = Field(1, ge=1, le=1 << 20, description="micro-batches per replica in the pipeline")

    @property
    def devices(self) -> int:
        return self.tp * self.pp * self.dp


class Config(_Strict):
    study: Literal["run"] = "run"  # the plain run (sim/studies/: other kinds have their own schemas)
    name: str | None = None
    workload: Workload
    hardware: Hardware
    parallel: Parallel = Field(default_factory=Parallel)
    run: Run = Field(default_factory=Run)


# --------------------------------------------------------------------------------------------
# YAML with line numbers
# --------------------------------------------------------------------------------------------


class _Duplicate(Exception):
    def __init__(self, key: str, line: int):
        self.key, self.line = key, line


def _lines(node, path=(), out=None) -> dict:
    """Map key paths to 1-based line numbers from a composed YAML node tree."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for k, v in node.value:
            if k.value in seen:
                raise _Duplicate(".".join(map(str, path + (k.value,))), k.start_mark.line + 1)
            seen.add(k.value)
            p = path + (k.value,)
            out[p] = k.start_mark.line + 1
            _lines(v, p, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            p = path + (i,)
            out[p] = v.start_mark.line + 1
            _lines(v, p, out)
    return out


_YAML_MEMO: dict = {}


def load_yaml(path: Path) -> tuple[dict, dict]:
    """(data, line map) of a YAML mapping file; any problem is a SimError naming the file.

    Files already read (same path, size and modification time) come from memory: sweeps prepare
    thousands of points against the same target and energy files."""
    try:
        st = os.stat(path)
        memo_key = (str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        memo_key = None
    if memo_key in _YAML_MEMO:
        data, lines = _YAML_MEMO[memo_key]
        return copy.deepcopy(data), lines
    data, lines = _load_yaml(path)
    if memo_key is not None:
        if len(_YAML_MEMO) > 64:
            _YAML_MEMO.clear()
        _YAML_MEMO[memo_key] = (copy.deepcopy(data), lines)
    return data, lines


def _load_yaml(path: Path) -> tuple[dict, dict]:
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise SimError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SimError(f"{path}: is a directory, not a YAML file") from None
    except OSError as e:
        raise SimError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SimError(f"{path}: not a text file (not UTF-8); expected YAML") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SimError(f"{path}:{where} YAML syntax error: {problem}") from None
    if data is None:
        raise SimError(f"{path}: empty file; expected a YAML mapping")
    try:
        lines = _lines(node)
    except _Duplicate as d:
        raise SimError(f"{path}: {d.key} (line {d.line}): duplicate key") from None
    if not isinstance(data, dict):
        raise SimError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data, lines


def _describe(err: dict) -> str:
    t, msg, inp = err["type"], err["msg"], err.get("input")
    if t == "extra_forbidden":
        return "unknown key"
    if t == "missing":
        return "missing required key"
    shown = repr(inp) if not isinstance(inp, dict) else "a mapping"
    return f"{msg[0].lower() + msg[1:]}, got {shown}"


def located(path, key, lines: dict) -> str:
    """How every config error starts: ``<file>: <key path> (line N)`` (the line where known).
    ``key`` is a dotted string or a tuple (sequence indices as ints)."""
    parts = tuple(key.split(".")) if isinstance(key, str) else tuple(key)
    line = lines.get(parts)
    return f"{path}: {'.'.join(map(str, parts))}" + (f" (line {line})" if line else "")


def validated(model, data, path: Path, lines: dict):
    """``model.model_validate(data)``; a failure is the one-line :func:`validation_error` of ``path``."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(path, e, lines) from None


def validation_error(path: Path, exc: ValidationError, lines: dict, prefix: tuple = ()) -> SimError:
    """The first schema error as one line: file, key path, line, expectation."""
    err = exc.errors()[0]
    loc = prefix + tuple(x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-after")))
    key = ".".join(str(x) for x in loc) or "(top level)"
    line = None
    for n in range(len(loc), 0, -1):
        line = lines.get(tuple(loc[:n]))
        if line is not None:
            break
    where = f" (line {line})" if line else ""
    return SimError(f"{path}: {key}{where}: {_describe(err)}")


def resolve_path(name: str, base: Path) -> Path:
    """A path from a config: absolute, relative to the config's folder, or relative to configs/."""
    p = Path(name)
    if p.is_absolute():
        return p
    for cand in (base / p, CONFIGS_DIR / p):
        if cand.exists():
            return cand
    return base / p


def load_config(path: str | Path, overrides: dict | None = None) -> tuple[Config, dict, dict]:
    """Parse and validate a run config.  Returns the Config, the raw (merged) mapping and the
    map of key paths to line numbers."""
    path = Path(path)
    data, lines = load_yaml(path)
    if overrides:
        data = merge(data, overrides)
    return validated(Config, data, path, lines), data, lines


def extends_path(path: Path, name, lines: dict, seen: tuple) -> Path:
    """The file that ``path``'s ``extends: name`` names (relative to ``path``), checked: a name, an
    existing file, no cycle through ``seen`` (the files already being extended).  One line errors."""
    where = located(path, "extends", lines)
    if not isinstance(name, str) or not name:
        raise SimError(f"{where}: expected the name of a file")
    parent = path.parent / name
    if not parent.exists():
        raise SimError(f"{where}: no such file {name!r} (looked in {path.parent})")
    if parent.resolve() in seen + (path.resolve(),):
        raise SimError(f"{where}: {name!r} extends itself (a cycle)")
    return parent


def merge(base: dict, over: dict) -> dict:
    """Deep merge of mappings (``over`` wins)."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out
