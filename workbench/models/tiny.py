"""Tiny seeded random Llama models with a byte-level tokenizer, built in memory for unit tests."""

from __future__ import annotations

from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, PAD = "<bos>", "<eos>", "<pad>"


def byte_tokenizer():
    """A byte-level tokenizer: 256 byte tokens plus <bos>, <eos>, <pad>; no merges, no files."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    for special in (BOS, EOS, PAD):
        vocab[special] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tk.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=BOS, eos_token=EOS, pad_token=PAD)
    # The bridge rebuilds tokenizers from `name_or_path` unless they already add BOS; ours lives in
    # memory, so declare it. The workbench itself always tokenises with add_special_tokens=False.
    tok.init_kwargs.update(name_or_path="workbench/byte-tokenizer", add_bos_token=True)
    return tok


def build_tiny(c: dict[str, Any]):
    """Return (hf_model, tokenizer) for a tiny config: layers, heads, kv_heads, d_model, d_mlp, n_ctx, seed."""
    tok = byte_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=c["d_model"], intermediate_size=c["d_mlp"],
        num_hidden_layers=c["layers"], num_attention_heads=c["heads"], num_key_value_heads=c["kv_heads"],
        max_position_embeddings=c["n_ctx"], initializer_range=0.1, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        rope_theta=10000.0,
    )
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(int(c["seed"]))
        model = LlamaForCausalLM(cfg)
    return model.eval(), tok
