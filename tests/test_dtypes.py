"""Half precision on the tiny model: reducers accumulate in float32, the fingerprint carries the dtype (not the
device), and asking for a device the machine lacks is one clear line (exit 2).

Tolerances come from each dtype's machine epsilon: a probability p = exp(s - logsumexp) whose scores carry an
absolute error ≤ |s|·eps (rounded inputs) and whose normaliser sums K terms is off by ≤ p·(2·max|s| + K)·eps;
statistics that add up T such probabilities (column sums, distances ≤ T·p) get T times that.
"""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch
from test_faults_model_cache import gguf_tiny  # noqa: F401  (fixture: a converted model without the 30 s)
from typer.testing import CliRunner

from workbench.engine import hooks, streaming
from workbench.engine.reducers import ReducerRequest, stats_from_patterns
from workbench.engine.run import stream_forward
from workbench.models import cache as model_cache
from workbench.models.loading import load_model, model_fingerprint, model_info, resolve_spec

REQUEST = ReducerRequest(row_argmax=True, column_sums=True, distance=True, key_sets={"sink": [0, 1]}, offsets=(1,))
HALF = ("bfloat16", "float16")


@pytest.fixture(scope="module", params=HALF)
def half(request):
    return load_model("tiny", device="cpu", dtype=request.param)


def _ids(model) -> torch.Tensor:
    tok = model_info(model).tokenizer
    text = "Half precision weights, float32 statistics: the ranking must not depend on rounding."
    return torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])


def _tolerance(eps: float, s_max: float, keys: int) -> float:
    return (2 * s_max + keys) * eps


def _compare(stats, patterns, tol: float) -> None:
    t = next(iter(patterns.values())).shape[-1]
    ref = stats_from_patterns(patterns, REQUEST)
    for name in ("argmax_val", "col_sum", "distance"):
        scale = 1 if name == "argmax_val" else t
        torch.testing.assert_close(getattr(stats, name), getattr(ref, name), atol=scale * tol, rtol=0)
    torch.testing.assert_close(stats.key_mass["sink"], ref.key_mass["sink"], atol=tol, rtol=0)
    torch.testing.assert_close(stats.offset_mass[1], ref.offset_mass[1], atol=tol, rtol=0)


def test_weights_in_the_dtype_statistics_in_float32(half):
    info = model_info(half)
    dtype = next(half.parameters()).dtype
    assert dtype in (torch.bfloat16, torch.float16) and str(dtype).endswith(info.spec.dtype)
    assert all(p.dtype == dtype for p in info.stream_model.parameters())
    stats = stream_forward(half, _ids(half), REQUEST).stats
    assert stats.col_sum.dtype == stats.distance.dtype == stats.argmax_val.dtype == torch.float32


def test_reducers_equal_float64_patterns_of_the_same_half_precision_q_k(half, monkeypatch):
    """The engine sees the model's bf16/fp16 q and k; from there on it must be as exact as float32 allows."""
    seen = {}
    original = streaming._blockwise

    def recording(collector, acc, module, query, key, value, mask, scaling, kwargs):
        seen[module.layer_idx] = (query.clone(), key.clone(), scaling)
        return original(collector, acc, module, query, key, value, mask, scaling, kwargs)

    monkeypatch.setattr(streaming, "_blockwise", recording)
    ids = _ids(half)
    stats = stream_forward(half, ids, REQUEST).stats
    assert seen and all(q.dtype == next(half.parameters()).dtype for q, _, _ in seen.values())
    patterns, s_max = {}, 0.0
    for layer, (q, k, scaling) in seen.items():
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1).double()
        scores = q.double() @ k.transpose(-1, -2) * scaling
        t = scores.shape[-1]
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        s_max = max(s_max, float(scores[..., causal].abs().max()))
        patterns[layer] = scores.masked_fill(~causal, float("-inf")).softmax(-1)
    _compare(stats, patterns, _tolerance(torch.finfo(torch.float32).eps, s_max, ids.shape[1]))


def test_reducers_match_the_bridge_patterns_in_the_same_dtype(half):
    """Bridge (eager, patterns rounded to the dtype) vs engine: apart only by the dtype's rounding of the scores
    and of the stored pattern, so within (2·max|s| + 2)·eps(dtype)."""
    ids = _ids(half)
    info = model_info(half)
    names = {hooks.pattern(x) for x in range(info.n_layers)} | {hooks.attn_scores(x) for x in range(info.n_layers)}
    _, cache = half.run_with_cache(ids, names_filter=lambda n: n in names)
    patterns = {x: cache[hooks.pattern(x)].double() for x in range(info.n_layers)}
    causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool).tril()
    s_max = max(float(cache[hooks.attn_scores(x)].float()[..., causal].abs().max()) for x in range(info.n_layers))
    eps = torch.finfo(next(half.parameters()).dtype).eps
    _compare(stream_forward(half, ids, REQUEST).stats, patterns, _tolerance(eps, s_max, 2))


def test_fingerprint_carries_the_dtype_not_the_device(half):
    spec = resolve_spec("tiny")
    assert "device" not in dataclasses.asdict(spec)
    fp32 = model_fingerprint(spec, "w")
    assert model_fingerprint(dataclasses.replace(spec, dtype="bfloat16"), "w") != fp32
    assert model_info(half).fingerprint != model_info(load_model("tiny", device="cpu")).fingerprint
    assert model_info(load_model("tiny", device="auto")).fingerprint == model_info(load_model("tiny")).fingerprint


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_naming_what_is_available():
    from workbench.cli.main import app

    result = CliRunner().invoke(app, ["run", "attention_profile", "-m", "tiny", "--device", "cuda"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "CUDA is not available" in lines[0] and "available: cpu" in lines[0], result.output
    bad = CliRunner().invoke(app, ["run", "attention_profile", "-m", "tiny", "--dtype", "float8"])
    assert bad.exit_code == 2 and "float32, bfloat16, float16" in bad.output



def test_half_precision_load_of_a_converted_model_maps_a_cast_file_with_the_same_weights(gguf_tiny, tmp_path):  # noqa: F811
    """`<name>/<dtype>/`: written once, bit-equal to transformers' own cast of the float32 file, the fingerprint
    it had before the file existed; rebuilt when damaged, or when it is not the cast of the current float32 files."""
    from transformers import AutoModelForCausalLM

    spec, calls = gguf_tiny
    load_model(spec.name)
    source = model_cache.converted_dir(spec)

    def weights(dtype):
        return model_info(load_model(spec.name, dtype=dtype)).stream_model.state_dict()

    def cast_by_transformers(dtype):
        return AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype)).state_dict()

    def same(a, b):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    for dtype in HALF:
        assert same(weights(dtype), cast_by_transformers(dtype))
        assert model_info(load_model(spec.name, dtype=dtype)).fingerprint == model_fingerprint(
            dataclasses.replace(spec, dtype=dtype), model_cache.weights_identity(source))
        file = source / dtype / "model.safetensors"
        written = file.stat().st_mtime_ns
        load_model(spec.name, dtype=dtype)
        assert file.stat().st_mtime_ns == written  # a second load maps it, does not rewrite it
    with file.open("r+b") as fh:  # damaged: rebuilt
        fh.truncate(file.stat().st_size - 8)
    assert same(weights("float16"), cast_by_transformers("float16")) and model_cache.fast_check(file.parent) is None
    shutil.copytree(source / "bfloat16", tmp_path / "stale")
    calls.seed = 1
    model_cache._convert(spec, source)  # the float32 weights change; an old cast file put back is not used
    shutil.copytree(tmp_path / "stale", source / "bfloat16")
    assert len(calls) == 2 and same(weights("bfloat16"), cast_by_transformers("bfloat16"))
