"""Workloads: the model zoo, aten-level traces, and prefill/decode phases.

``from workloads import trace`` is cheap: torch and transformers are imported only when a trace is
not in the cache.  The trace's columns are documented in :data:`workloads.schema.COLUMNS`.
"""

from workloads.api import DecodeTemplate, decode_template, summarize, trace, trace_text
from workloads.schema import COLUMNS
from workloads.zoo import ModelSpec, register

__all__ = ["COLUMNS", "DecodeTemplate", "ModelSpec", "decode_template", "register", "summarize", "trace",
           "trace_text"]
