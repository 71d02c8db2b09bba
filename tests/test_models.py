"""Model registry and loading: names, local directories, the bundled SmolLM2 against plain transformers."""

from __future__ import annotations

import pytest
import torch

from workbench.core.errors import ModelError
from workbench.models import loading as models


def test_unknown_name_lists_known_models():
    with pytest.raises(ModelError) as exc:
        models.resolve_spec("smollm3-999m")
    assert "smollm2-135m" in str(exc.value) and "tiny" in str(exc.value)


@pytest.mark.parametrize("bad", ["", "   ", "a/b/c"])
def test_malformed_names_fail_clearly(bad):
    with pytest.raises(ModelError):
        models.resolve_spec(bad)


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="config.json"):
        models.resolve_spec(str(tmp_path))


def test_model_info_requires_workbench_loading():
    with pytest.raises(ModelError, match="load_model"):
        models.model_info(object())


def test_tiny_is_seeded_and_fingerprinted(tiny):
    again = models.load_model("tiny")
    a, b = models.model_info(tiny), models.model_info(again)
    assert a.fingerprint == b.fingerprint
    assert a.fingerprint != models.model_info(models.load_model("tiny-mha")).fingerprint
    ids = torch.tensor([[256, 72, 105]])
    torch.testing.assert_close(tiny(ids), again(ids))


def test_local_hf_directory_loads_like_the_original(tmp_path, tiny):
    from workbench.models.tiny import build_tiny

    hf, tok = build_tiny(models.TINY["tiny"].tiny_config)
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    local = models.load_model(str(tmp_path))
    info = models.model_info(local)
    assert info.spec.source == "local" and (info.n_layers, info.n_heads, info.n_kv_heads) == (2, 4, 2)
    ids = torch.tensor([[256, 72, 105, 33]])
    torch.testing.assert_close(local(ids), tiny(ids), atol=1e-6, rtol=0)


def test_stream_twin_shares_weights_with_the_bridge(tiny):
    info = models.model_info(tiny)
    twin_w = info.stream_model.model.layers[0].self_attn.q_proj.weight
    bridge_w = tiny.blocks[0].attn.q.original_component.weight
    assert twin_w.data_ptr() == bridge_w.data_ptr()


@pytest.mark.real_model
# transformer-lens 4.3's TransformerBridge._generate_tokens passes `past_key_values=` to the HF forward
# (model_bridge/transformer_bridge.py); transformers 5 deprecates it for `cache`. Upstream, not ours: ignore only that.
@pytest.mark.filterwarnings("ignore:`past_key_values` is deprecated:FutureWarning")
def test_smollm2_bridge_equals_transformers_and_generates_text(smol):
    from transformers import AutoModelForCausalLM

    info = models.model_info(smol)
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.n_ctx) == (30, 9, 3, 8192)
    hf = AutoModelForCausalLM.from_pretrained(models.model_cache.converted_dir(info.spec), dtype=torch.float32,
                                              attn_implementation="eager").eval()
    worst = 0.0
    for text in ["The capital of France is", "def add(a, b):\n    return", "When Mary and John went to the store,"]:
        ids = smol.to_tokens(text)
        with torch.no_grad():
            worst = max(worst, (smol(ids) - hf(ids).logits).abs().max().item())
    print(f"max |bridge - transformers| logits = {worst:.3g}")
    assert worst < 1e-4
    out = smol.generate("The capital of France is", max_new_tokens=6, do_sample=False, verbose=False)
    assert "Paris" in out


@pytest.mark.real_model
def test_smollm2_loads_offline_from_the_converted_cache(smol):
    info = models.model_info(smol)
    assert (models.model_cache.converted_dir(info.spec) / models.model_cache.SOURCE_FILE).exists()
    assert models.availability(info.spec) == "offline (converted)"


@pytest.mark.real_model
def test_gemma3_converts_loads_and_streams_exactly():
    from workbench.engine.reducers import ReducerRequest, stats_from_patterns
    from workbench.engine.run import stream_forward

    gemma = models.load_model("gemma3-270m")
    info = models.model_info(gemma)
    assert (info.n_layers, info.n_heads, info.n_kv_heads) == (18, 4, 1)
    ids = gemma.to_tokens("When Mary and John went to the store, John gave a drink to")
    assert ids[0, 0].item() == info.tokenizer.bos_token_id  # Gemma needs <bos>
    result = stream_forward(gemma, ids, ReducerRequest(), logits="all")
    logits, cache = gemma.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    assert (result.logits - logits).abs().max().item() < 1e-4
    ref = stats_from_patterns({x: cache[f"blocks.{x}.attn.hook_pattern"] for x in range(18)}, ReducerRequest())
    torch.testing.assert_close(result.stats.col_sum, ref.col_sum, atol=1e-4, rtol=1e-5)
    assert logits[0, -1].argmax().item() == info.tokenizer(" Mary", add_special_tokens=False)["input_ids"][0]
