"""The MatMul-free LM in the zoo: its BitLinears traced as ternary GEMMs with ternary weights, a
recurrent state instead of a KV cache, and the inference form equal to the trained form."""

import pytest
import torch

from models import matmulfree as mf
from workloads import trace, zoo


@pytest.mark.parametrize("size", ["370M", "1.3B", "2.7B"])
def test_ternary_gemms_carry_every_ternary_weight(size):
    spec = zoo.get(f"MMfreeLM-{size}")
    cfg = mf.SIZES[size]
    tokens = 16
    df = trace(spec.name, "prefill", 1, tokens)
    t = df[df.kind == "ternary_gemm"]
    counts = mf.param_breakdown(cfg)
    # six BitLinears per block (i, f, g, o; fused gate+up; down) and the ternary LM head
    assert len(t) == 6 * cfg.num_hidden_layers + 1
    assert t.weight_bytes.sum() == 2 * (counts["ternary_blocks"] + counts["lm_head"])  # fp16 storage
    head = t[t.role == "lm_head"]
    assert head.gemm_m.item() == 1 and head.gemm_n.item() == cfg.vocab_size  # prefill: last position only
    body = t[t.role != "lm_head"]
    assert (body.gemm_m == tokens).all()
    assert t.flops.sum() == 2 * tokens * counts["ternary_blocks"] + 2 * counts["lm_head"]
    assert set(body.role) == {"mix_candidate", "mix_forget", "mix_gate", "o_proj", "mlp_gate", "mlp_down"}
    assert not (df.kind.isin(["gemm", "attn_matmul"])).any()  # no multiplications by weights left


def test_decode_has_a_state_not_a_kv_cache():
    a = trace("MMfreeLM-370M", "decode", 1, 1, 10)
    b = trace("MMfreeLM-370M", "decode", 1, 1, 1000)
    assert a.kv_bytes_read.sum() == a.kv_bytes_written.sum() == 0
    cols = ["op", "kind", "role", "in_shapes", "flops", "bytes_read", "bytes_written"]
    assert a[cols].reset_index(drop=True).equals(b[cols].reset_index(drop=True))  # context changes nothing


def test_the_traced_inference_form_computes_what_the_model_does():
    torch.manual_seed(0)
    cfg = mf.tiny_config()
    model = mf.MatMulFreeLM(cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 7))
    with torch.no_grad():
        ref, _ = model(ids)
        model.freeze()
        frozen, _ = model(ids)
        step = model.trace_run(ids, "prefill")
    torch.testing.assert_close(frozen, ref)
    torch.testing.assert_close(step[:, 0], ref[:, -1])
    w = model.layers[0].attn.i_proj.weight
    assert set(w.unique().tolist()) <= {-1.0, 0.0, 1.0}
