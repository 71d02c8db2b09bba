"""engine.window: rows of a page of queries from cached post-rotary q and k equal the full pattern's rows.

Reference: softmax of the bridge's own pre-softmax scores (`hook_attn_scores`, float64 tiny model), taken in float64
(the bridge's `hook_pattern` and HF eager attention round the softmax to float32). Layer 0 reads the same q and k
in both paths, so it agrees to float64 rounding (1e-12); later layers differ by the bridge's float32 softmax in the
layers below (ε₃₂ ≈ 6e-8 per weight, carried through a few layers): 1e-6.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from workbench.core.errors import PromptError
from workbench.engine import hooks, window
from workbench.engine.probe import prompt_ids

TEXT = "The quick brown fox jumps over the lazy dog. " * 8  # 361 byte tokens with BOS


@pytest.fixture(scope="module")
def tiny64():
    from float64 import tiny_in_float64

    return tiny_in_float64()


def _reference(model, ids) -> list[torch.Tensor]:
    _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n.endswith("attn.hook_attn_scores"))
    return [torch.softmax(cache[hooks.attn_scores(layer)][0].double(), dim=-1) for layer in range(2)]


@pytest.mark.parametrize("size", [150, 361, 1000])
def test_window_rows_equal_the_full_pattern(tiny64, size):
    ids = prompt_ids(tiny64, TEXT)
    ref = _reference(tiny64, ids)
    for layer, tol in ((0, 1e-12), (1, 1e-6)):
        for page in range(window.n_pages(len(ids), size)):
            wp = window.window_pattern(tiny64, ids, layer, page, size)
            s, e = wp.start, wp.stop
            assert (s, e, wp.pattern.dtype) == (page * size, min(len(ids), (page + 1) * size), torch.float64)
            torch.testing.assert_close(wp.pattern, ref[layer][:, s:e, s:e], atol=tol, rtol=0)
            torch.testing.assert_close(wp.bos, ref[layer][:, s:e, 0], atol=tol, rtol=0)
            torch.testing.assert_close(wp.before, ref[layer][:, s:e, 1:max(1, s)].sum(-1), atol=tol, rtol=0)
            total = wp.pattern.sum(-1) + wp.before + (wp.bos if s > 0 else 0)
            torch.testing.assert_close(total, torch.ones_like(total), atol=1e-12, rtol=0)


def test_one_prefill_serves_every_layer_and_page(tiny):
    ids = prompt_ids(tiny, TEXT)
    window.CACHE.clear()
    first = window.layer_qk(tiny, ids, 1)
    assert len(window.CACHE.items) == 2  # both layers of the tiny model from one prefill
    assert window.layer_qk(tiny, ids, 1) is first and window.layer_qk(tiny, ids, 0) is not first
    assert first.q.shape == (4, len(ids), 16) and first.k.shape == (2, len(ids), 16)  # GQA: 4 heads, 2 KV heads
    assert window.layer_qk(tiny, ids[:-1], 1) is not first  # another prompt, another entry


def test_lru_keeps_the_newest_within_its_budget():
    lru = window._LRU(max_bytes=100)
    entry = window._Layer(torch.zeros(5), torch.zeros(5), 1.0, None, None)  # 2 × 5 float32: 40 bytes
    for key in "abc":
        lru.put(key, entry)
    assert lru.get("b") is entry  # b is now the freshest
    lru.put("d", entry)
    assert list(lru.items) == ["b", "d"]


def test_payload_decodes_to_the_window_rows(tiny):
    from workbench import api

    page = api.attention_window(tiny, TEXT, 1, page=1, size=100)
    assert (page["start"], page["stop"], page["n_pages"], page["n_tokens"]) == (100, 200, 4, 361)
    assert page["heads"] == ["L1H0", "L1H1", "L1H2", "L1H3"] and len(page["tokens"]) == 100
    u16 = np.frombuffer(base64.b64decode(page["pattern_u16"]), dtype="<u2").astype(np.float64) / 65535
    wp = window.window_pattern(tiny, prompt_ids(tiny, TEXT), 1, 1, 100)
    rows, cols = torch.tril_indices(100, 100)
    assert u16.shape == (4 * 100 * 101 // 2,)
    np.testing.assert_allclose(u16, wp.pattern[:, rows, cols].reshape(-1).double().numpy(), atol=0.5 / 65535 + 1e-7)
    np.testing.assert_allclose(page["before"], wp.before.numpy(), atol=5e-6)


def test_limits_say_what_to_do(tiny):
    ids = prompt_ids(tiny, "x" * 600)
    with pytest.raises(PromptError, match="The prompt has 601 tokens; the model's context is 512"):
        window.window_pattern(tiny, ids, 0)
    ids = prompt_ids(tiny, TEXT)
    with pytest.raises(PromptError, match=r"Page 4 does not exist: 361 tokens make 4 pages of 100 \(pages 0..3\)"):
        window.window_pattern(tiny, ids, 0, page=4, size=100)
    with pytest.raises(PromptError, match="Layer 2 does not exist"):
        window.window_pattern(tiny, ids, 2)
    with pytest.raises(PromptError, match="window size"):
        window.window_pattern(tiny, ids, 0, size=0)


def test_worker_op_answers_a_page(tiny):
    from workbench.worker import Worker

    events = []
    worker = Worker("tiny", events.append)
    worker.handle({"id": "j1", "op": "attention_window", "args": {"text": TEXT, "layer": 0, "page": 3, "size": 100}})
    done = events[-1]
    assert done["event"] == "done" and done["result"]["stop"] == 361 and done["result"]["tokens"][-1] == " "
    worker.handle({"id": "j2", "op": "attention_window", "args": {"text": TEXT, "layer": 0, "page": 9}})
    assert events[-1]["event"] == "error" and "Page 9 does not exist" in events[-1]["message"]


@pytest.mark.real_model
def test_smollm2_gqa_rows_match_the_bridge(smol):
    """SmolLM2 (9 heads, 3 KV heads) in float32: window rows against the bridge's pattern (float32 rounding)."""
    from workbench import api
    from workbench.engine.probe import pattern_of

    model = smol
    ids = prompt_ids(model, api.public_domain_text()[:1500])
    for layer in (0, 17):
        ref = torch.stack([pattern_of(model, ids, layer, h) for h in range(9)]).double()
        wp = window.window_pattern(model, ids, layer, page=1, size=128)
        s, e = wp.start, wp.stop
        torch.testing.assert_close(wp.pattern.double(), ref[:, s:e, s:e], atol=2e-5, rtol=0)
        torch.testing.assert_close(wp.before.double(), ref[:, s:e, 1:s].sum(-1), atol=2e-5, rtol=0)
