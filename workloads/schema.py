"""The trace's column schema (torch-free, so cached traces load without importing torch)."""

# Bump when the meaning or the set of columns changes: it is part of every cache key.
TRACE_SCHEMA_VERSION = 3

#: The trace's columns: name -> (dtype, meaning).  Documented in the README; tests check that every
#: trace has exactly these columns with these dtypes.
COLUMNS: dict[str, tuple[str, str]] = {
    "idx": ("int64", "position of the op in execution order, from 0"),
    "op": ("str", "aten op without overload ('mm', 'add', ...) or 'mlhw.attn_score'/'mlhw.attn_context'/"
           "'mlhw.ternary_mm'"),
    "kind": ("str", "gemm | attn_matmul | ternary_gemm (a BitLinear's matmul: ternary weights, adds and "
             "subtracts) | elementwise | reduction | norm | softmax | embedding | copy | creation | view | other"),
    "role": ("str", "what the op does in the model: embedding, pos_embedding, q_proj, k_proj, v_proj, "
             "qkv_proj, o_proj, attn_score, attn_mask, attn_softmax, attn_context, kv_write, attn_other, "
             "mix_candidate, mix_forget, mix_gate (a MatMul-free LM's MLGRU projections), "
             "mlp_gate, mlp_up, mlp_gate_up, mlp_down, activation, mlp_other, norm, residual, rotary, "
             "lm_head, pooler, mask, lora (a LoRA adapter run beside its projection: its two low-rank matmuls, "
             "scaling and add), layer_other, model_other"),
    "module": ("str", "dotted path of the module that issued the op ('' for the top level)"),
    "layer": ("int64", "index of the transformer layer, -1 outside the layers"),
    "in_shapes": ("str", "shapes of the tensor operands, dims joined by 'x', operands by ';' ('' for 0-d)"),
    "in_dtypes": ("str", "dtypes of the tensor operands, joined by ';' (f16, bf16, f32, i64, b8, ...)"),
    "out_shapes": ("str", "shapes of the outputs, as in_shapes"),
    "dtype": ("str", "dtype of the first output"),
    "flops": ("int64", "floating-point (or integer) operations: 2 per multiply-accumulate, 1 per element "
              "for pointwise ops, 5 per element for softmax and layer norm, 1 per input element for reductions"),
    "bytes_read": ("int64", "bytes the op reads: distinct elements of its tensor operands (broadcast "
                   "dims count once; an embedding reads only the rows it gathers)"),
    "bytes_written": ("int64", "bytes the op writes: its outputs (for copy_, the destination)"),
    "weight_bytes": ("int64", "part of bytes_read that is model parameters (or views of them)"),
    "kv_bytes_read": ("int64", "part of bytes_read that is KV cache"),
    "kv_bytes_written": ("int64", "part of bytes_written that is KV cache"),
    "gemm_m": ("int64", "GEMM view of a matmul, C[M,N] += A[M,K] B[K,N], per batch entry; 0 otherwise"),
    "gemm_n": ("int64", "see gemm_m"),
    "gemm_k": ("int64", "see gemm_m"),
    "gemm_batch": ("int64", "number of independent GEMMs (1 for mm/addmm; batch x heads for attention)"),
    "expert": ("int64", "index of the mixture-of-experts expert whose work the op is (its projections, "
               "activation and weighted sum), -1 otherwise"),
}


INT_COLUMNS = [c for c, (t, _) in COLUMNS.items() if t == "int64"]
