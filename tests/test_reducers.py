"""Streaming reducers equal the same statistics computed directly from full attention patterns."""

from __future__ import annotations

import pytest
import torch

from workbench.core.errors import PromptError
from workbench.core.prompts import pad_batch
from workbench.engine import hooks, streaming
from workbench.engine.reducers import ReducerRequest, stats_from_patterns
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info

FULL = ReducerRequest(row_argmax=True, column_sums=True, distance=True, key_sets={"sink": [0, 1], "mid": [5]},
                      offsets=(1, 2), entropy=True)


@pytest.fixture(autouse=True, params=["kernel", "torch"])
def reducer_path(request, monkeypatch):
    """Every test runs through the fused native kernel (where it builds) and through the torch path."""
    from workbench.engine import kernels
    from workbench.engine.kernels import softmax_stats

    if request.param == "torch":
        monkeypatch.setattr(softmax_stats, "available", lambda: False)
    elif not softmax_stats.available():
        pytest.skip(f"the native kernel is unavailable here: {kernels.why_unavailable('softmax_stats')}")
    return request.param


def _ids(model, text: str) -> torch.Tensor:
    info = model_info(model)
    return torch.tensor([[info.tokenizer.bos_token_id, *info.tokenizer(text, add_special_tokens=False)["input_ids"]]])


def _patterns(model, ids):
    info = model_info(model)
    names = [hooks.pattern(x) for x in range(info.n_layers)] + [hooks.z(x) for x in range(info.n_layers)]
    _, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    return {x: cache[hooks.pattern(x)] for x in range(info.n_layers)}, cache


def _direct(pattern: torch.Tensor, window: int | None = None) -> dict[str, torch.Tensor]:
    """Independent, loop-free-but-naive formulas on one layer's full pattern [B, H, T, T]."""
    t = pattern.shape[-1]
    q = torch.arange(t)[:, None]
    k = torch.arange(t)[None, :]
    dist = (q - k).clamp(min=0).float()
    if window is not None:
        dist = dist.clamp(max=window)
    return {
        "argmax_val": pattern.max(-1).values,
        "col_sum": pattern.sum(-2),
        "distance": (pattern * dist).sum(-1),
        "sink": pattern[..., [0, 1]].sum(-1),
        "prev": torch.stack([pattern[..., i, i - 1] if i else torch.zeros_like(pattern[..., 0, 0])
                             for i in range(t)], -1),
        "entropy": -(pattern * pattern.clamp_min(1e-30).log()).sum(-1),
    }


def _assert_matches(stats, patterns, window=None, atol=1e-5):
    for layer, pattern in patterns.items():
        i = stats.layer_index(layer)
        want = _direct(pattern.float(), window)
        torch.testing.assert_close(stats.argmax_val[:, i], want["argmax_val"], atol=atol, rtol=0)
        torch.testing.assert_close(stats.distance[:, i], want["distance"], atol=atol * 100, rtol=1e-5)
        torch.testing.assert_close(stats.key_mass["sink"][:, i], want["sink"], atol=atol, rtol=0)
        torch.testing.assert_close(stats.offset_mass[1][:, i], want["prev"], atol=atol, rtol=0)
        if stats.col_sum is not None:
            torch.testing.assert_close(stats.col_sum[:, i], want["col_sum"], atol=atol * 10, rtol=1e-5)
        if stats.entropy is not None:
            torch.testing.assert_close(stats.entropy[:, i], want["entropy"], atol=atol * 10, rtol=1e-5)
        picked = pattern.gather(-1, stats.argmax_pos[:, i, ..., None])[..., 0]
        torch.testing.assert_close(picked, want["argmax_val"], atol=atol, rtol=0)


@pytest.mark.parametrize("fixture", ["tiny", "tiny_mha"])
def test_stream_stats_equal_full_patterns(request, fixture):
    model = request.getfixturevalue(fixture)
    ids = _ids(model, "Streaming reducers must equal full patterns, token by token.")
    patterns, _ = _patterns(model, ids)
    _assert_matches(stream_forward(model, ids, FULL).stats, patterns)


@pytest.mark.parametrize("window", [1, 3, 16])
def test_clipped_distance(tiny, window):
    ids = _ids(tiny, "windowed average attention distance")
    patterns, _ = _patterns(tiny, ids)
    request = ReducerRequest(distance_window=window, key_sets={"sink": [0, 1]}, offsets=(1,))
    _assert_matches(stream_forward(tiny, ids, request).stats, patterns, window=window)


def test_statistics_without_entropy_or_offsets(tiny):
    """No statistic reads P itself: the kernel leaves exp(s − max) in the block and P·V is scaled by the row max."""
    ids = _ids(tiny, "deferred normalization gives the same statistics and head outputs")
    patterns, cache = _patterns(tiny, ids)
    lean = ReducerRequest(key_sets={"sink": [0, 1]})
    stats = stream_forward(tiny, ids, lean, output_positions=[-1]).stats
    info = model_info(tiny)
    for layer, pattern in patterns.items():
        i, want = stats.layer_index(layer), _direct(pattern.float())
        torch.testing.assert_close(stats.argmax_val[:, i], want["argmax_val"], atol=1e-5, rtol=0)
        torch.testing.assert_close(stats.distance[:, i], want["distance"], atol=1e-3, rtol=1e-5)
        torch.testing.assert_close(stats.key_mass["sink"][:, i], want["sink"], atol=1e-5, rtol=0)
        torch.testing.assert_close(stats.col_sum[:, i], want["col_sum"], atol=1e-4, rtol=1e-5)
        w_o = info.stream_model.model.layers[layer].self_attn.o_proj.weight
        z = cache[hooks.z(layer)][0, -1]
        head_out = torch.einsum("hd,mhd->hm", z, w_o.view(info.d_model, info.n_heads, info.d_head))
        torch.testing.assert_close(stats.head_out[0, i, 0], head_out, atol=1e-5, rtol=1e-5)


def test_many_small_blocks_give_the_same_answer(tiny, monkeypatch):
    ids = _ids(tiny, "blocks of three query rows at a time, many of them")
    monkeypatch.setattr(streaming, "ROWS_PER_BLOCK", 3)
    patterns, _ = _patterns(tiny, ids)
    _assert_matches(stream_forward(tiny, ids, FULL).stats, patterns)


def test_head_outputs_equal_z_times_w_o(tiny):
    ids = _ids(tiny, "head outputs at chosen positions")
    info = model_info(tiny)
    _, cache = _patterns(tiny, ids)
    stats = stream_forward(tiny, ids, ReducerRequest(), output_positions=[-1, 2]).stats
    t = ids.shape[1]
    for i, layer in enumerate(stats.layers):
        w_o = info.stream_model.model.layers[layer].self_attn.o_proj.weight  # [d_model, H*D]
        z = cache[hooks.z(layer)][0]  # [T, H, D]
        for p, pos in enumerate([t - 1, 2]):
            want = torch.einsum("hd,mhd->hm", z[pos], w_o.view(info.d_model, info.n_heads, info.d_head))
            torch.testing.assert_close(stats.head_out[0, i, p], want, atol=1e-5, rtol=1e-5)


def test_right_padded_batch_matches_single_prompts(tiny):
    texts = ["a longer prompt with several words", "short"]
    singles = [_ids(tiny, t)[0].tolist() for t in texts]
    ids, mask = pad_batch(singles, model_info(tiny).tokenizer.pad_token_id)
    batched = stream_forward(tiny, ids, FULL, attention_mask=mask).stats
    for row, seq in enumerate(singles):
        alone = stream_forward(tiny, torch.tensor([seq]), FULL).stats
        n = len(seq)
        torch.testing.assert_close(batched.distance[row, ..., :n], alone.distance[0], atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(batched.col_sum[row, ..., :n], alone.col_sum[0], atol=1e-4, rtol=1e-5)


def test_decoding_with_kv_cache_matches_full_forward(tiny):
    from transformers import DynamicCache

    ids = _ids(tiny, "decode one token at a time")
    full = stream_forward(tiny, ids, FULL).stats
    cache = DynamicCache(config=model_info(tiny).hf_config)
    prefix = 5
    stream_forward(tiny, ids[:, :prefix], FULL, past_key_values=cache)
    for step in range(prefix, ids.shape[1]):
        stats = stream_forward(tiny, ids[:, step:step + 1], FULL, past_key_values=cache).stats
        torch.testing.assert_close(stats.argmax_val[..., 0], full.argmax_val[..., step], atol=1e-5, rtol=0)
        torch.testing.assert_close(stats.distance[..., 0], full.distance[..., step], atol=1e-4, rtol=1e-5)
        assert stats.col_sum.shape[-1] == step + 1


def test_hand_built_patterns_known_answers():
    # One head, 3 tokens: row 0 -> key 0; row 1 splits 0.5/0.5; row 2 puts 0.2/0.3/0.5.
    pattern = torch.tensor([[[[1.0, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]]])
    stats = stats_from_patterns({0: pattern}, ReducerRequest(key_sets={"bos": [0]}, offsets=(1,)))
    assert stats.argmax_pos[0, 0, 0].tolist() == [0, 0, 2]
    torch.testing.assert_close(stats.col_sum[0, 0, 0], torch.tensor([1.7, 0.8, 0.5]))
    torch.testing.assert_close(stats.distance[0, 0, 0], torch.tensor([0.0, 0.5, 0.2 * 2 + 0.3]))
    torch.testing.assert_close(stats.key_mass["bos"][0, 0, 0], torch.tensor([1.0, 0.5, 0.2]))
    torch.testing.assert_close(stats.offset_mass[1][0, 0, 0], torch.tensor([0.0, 0.5, 0.3]))


def test_bad_requests_fail_clearly(tiny):
    ids = _ids(tiny, "x")
    with pytest.raises(PromptError, match="do not exist"):
        stream_forward(tiny, ids, ReducerRequest(layers=[7]))
    with pytest.raises(PromptError, match="exceed the context"):
        stream_forward(tiny, torch.zeros(1, 600, dtype=torch.long), ReducerRequest())
    with pytest.raises(PromptError, match="outside"):
        stream_forward(tiny, ids, ReducerRequest(), output_positions=[40])


@pytest.mark.real_model
def test_smollm2_stream_stats_equal_full_patterns(smol):
    ids = _ids(smol, "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the")
    patterns, _ = _patterns(smol, ids)
    _assert_matches(stream_forward(smol, ids, FULL).stats, patterns)


def test_requests_without_value_columns_and_keys_past_the_prompt(tiny):
    """No distance and no key sets: P·V alone; a key set reaching past the prompt counts its keys inside it."""
    ids = _ids(tiny, "value columns only when asked")
    patterns, _ = _patterns(tiny, ids)
    bare = stream_forward(tiny, ids, ReducerRequest(distance=False, column_sums=False)).stats
    far = stream_forward(tiny, ids, ReducerRequest(key_sets={"far": [1, 2, 10_000]})).stats
    for layer, pattern in patterns.items():
        i = bare.layer_index(layer)
        torch.testing.assert_close(bare.argmax_val[:, i], pattern.max(-1).values, atol=1e-5, rtol=0)
        assert bare.distance is None and bare.col_sum is None
        torch.testing.assert_close(far.key_mass["far"][:, i], pattern[..., [1, 2]].sum(-1), atol=1e-5, rtol=0)
