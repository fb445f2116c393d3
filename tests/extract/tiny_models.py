"""Tiny MoE checkpoints of every supported family, built from configs (CPU, seconds)."""

from ising_moe.extract import extract

VOCAB = 101


def tiny_configs():
    from transformers import (
        MixtralConfig,
        OlmoeConfig,
        Qwen2MoeConfig,
        Qwen3MoeConfig,
        SwitchTransformersConfig,
    )

    common = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=4, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    return {
        # capacity 6 per expert per 24-token sequence: drops happen
        "switch": SwitchTransformersConfig(vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=4,
                                           num_decoder_layers=2, num_sparse_encoder_layers=2,
                                           num_sparse_decoder_layers=1, num_heads=4, num_experts=4,
                                           expert_capacity=6),
        "olmoe": OlmoeConfig(intermediate_size=16, num_experts=8, num_experts_per_tok=2, **common),
        "mixtral": MixtralConfig(intermediate_size=16, num_local_experts=4, num_experts_per_tok=2, **common),
        "qwen2_moe": Qwen2MoeConfig(intermediate_size=32, moe_intermediate_size=16,
                                    shared_expert_intermediate_size=32, num_experts=8, num_experts_per_tok=2,
                                    **common),
        "qwen3_moe": Qwen3MoeConfig(intermediate_size=32, moe_intermediate_size=16, num_experts=8,
                                    num_experts_per_tok=2, head_dim=8, **common),
    }


def run_extract(ckpt, corpus, tmp_path, name="out.h5", **kw):
    kw.setdefault("max_length", 24)
    kw.setdefault("n_sequences", 12)
    kw.setdefault("batch_size", 4)
    kw.setdefault("device", "cpu")
    kw.setdefault("progress", False)
    return extract(str(ckpt), corpus, output=tmp_path / name, **kw)


