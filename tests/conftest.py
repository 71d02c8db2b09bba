"""Shared fixtures: tiny seeded models for units, the bundled SmolLM2 for integration tests.

Every test gets its own activation cache and results directory (env vars), so tests never see each
other's files; the converted model cache is shared (it is the user's, and converting takes ~30 s).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


@pytest.fixture(scope="session")
def tiny():
    from workbench.models.loading import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def tiny_mha():
    from workbench.models.loading import load_model

    return load_model("tiny-mha")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """A seeded random 2-layer GPT-2 (Conv1D projections, fused QKV, learned positions) loaded from a local
    directory, with the tiny models' byte tokenizer: the architecture of the GPT-2 reference circuits."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from workbench.models.loading import load_model
    from workbench.models.tiny import byte_tokenizer

    tok = byte_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(cfg).eval()
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return load_model(str(directory))


@pytest.fixture(scope="session")
def smol():
    from workbench import api

    return api.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_ioi(tiny):
    """IOI-shaped contrast set in single-byte names (the tiny model's tokenizer is bytewise)."""
    from workbench import api
    from workbench.core.contrast import ContrastSet
    from workbench.models.loading import model_info

    tok = model_info(tiny).tokenizer
    one = lambda ch: tok(ch, add_special_tokens=False)["input_ids"][0]  # noqa: E731
    names = [("M", "J", "T"), ("A", "B", "C"), ("P", "K", "L"), ("R", "S", "D")]
    clean = [f"When {a} and {b} went out, {b} gave it to" for a, b, _ in names]
    corrupt = [f"When {a} and {b} went out, {c} gave it to" for a, b, c in names]
    meta = [{"answer_id": one(a), "wrong_ids": [one(b)], "wrong_id": one(b)} for a, b, _ in names]
    return ContrastSet("tiny-ioi", api.PromptSet.from_texts("tiny-ioi", clean, metadata=meta),
                       api.PromptSet.from_texts("tiny-ioi-abc", corrupt, metadata=meta))
