"""Decode templates: any context from two traces, whole generations in closed form."""

import pandas as pd
import pytest

from models.errors import SimError
from workloads import decode_template, trace


@pytest.mark.parametrize("name,seq", [("Llama-3-8B", 1), ("OPT-1.3B", 1), ("Phi-2", 4), ("Qwen2-7B", 1)])
def test_template_equals_direct_trace(name, seq):
    tpl = decode_template(name, batch=2, seq=seq)
    for ctx in (1, 77, 1500):
        want = trace(name, "decode", 2, seq, ctx)
        got = tpl.at(ctx)
        pd.testing.assert_frame_equal(got, want)
        assert got.attrs == want.attrs


def test_generation_total_is_the_sum_of_its_steps():
    tpl = decode_template("Llama-2-7B", batch=1, seq=1)
    steps = [tpl.at(256 + k) for k in range(20)]
    total = tpl.total(256, 20)
    for c in ("flops", "bytes_read", "bytes_written", "weight_bytes", "kv_bytes_read", "kv_bytes_written"):
        assert (total[c].to_numpy() == sum(s[c].to_numpy() for s in steps)).all(), c
    assert total.attrs["steps"] == 20
    # weights are read once per token; the KV cache grows by one token per step
    assert total.weight_bytes.sum() == 20 * steps[0].weight_bytes.sum()
    assert steps[1].kv_bytes_read.sum() - steps[0].kv_bytes_read.sum() == 32 * 2 * 32 * 128 * 2


def test_speculative_steps_advance_by_seq():
    tpl = decode_template("Llama-3-8B", batch=1, seq=4)
    total = tpl.total(100, 3)  # contexts 100, 104, 108
    want = sum(trace("Llama-3-8B", "decode", 1, 4, c).flops.sum() for c in (100, 104, 108))
    assert total.flops.sum() == want


def test_template_context_is_bounded():
    tpl = decode_template("OPT-1.3B")
    tpl.at(2047)
    with pytest.raises(SimError):
        tpl.at(2048)
    with pytest.raises(SimError):
        tpl.at(0)
