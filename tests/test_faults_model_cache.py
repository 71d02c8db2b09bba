"""Fault injection into the converted model cache: bit flips, truncation, legacy caches, killed conversions.

Each damaged conversion must be detected (sizes and times on every load, the sha256 when they change)
and reconverted, giving the same weights and fingerprint again. Everything runs in a temp model cache.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
import torch
from damage import flip_bits

from workbench.models import cache as model_cache
from workbench.models import loading as models

IDS = torch.tensor([[256, 72, 105, 33, 44]])


# ==== the converted model cache ====================================================================
class Calls(list):
    seed = 0


@pytest.fixture
def gguf_tiny(tmp_path, monkeypatch):
    """A GGUF-packaged model whose 'conversion' saves the tiny Llama: the cache logic without the 30 s."""
    monkeypatch.setenv("WORKBENCH_MODEL_CACHE", str(tmp_path / "models"))
    spec = models.ModelSpec(name="tiny-gguf", hf_id="workbench/tiny-gguf", source="gguf-package",
                            gguf_package="not_needed", gguf_file="tiny.gguf",
                            tiny_config=models.TINY["tiny"].tiny_config)
    monkeypatch.setitem(models.BUNDLED, spec.name, spec)
    calls = Calls()  # one per conversion; set calls.seed to convert to other weights

    def fake_convert(spec, target):
        from workbench.models.tiny import build_tiny

        calls.append(target)
        hf, tok = build_tiny({**spec.tiny_config, "seed": getattr(calls, "seed", 0)})
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        model_cache._install(tmp, target, {"gguf_file": spec.gguf_file, "gguf_sha256": "0" * 64})

    monkeypatch.setattr(model_cache, "_convert", fake_convert)
    return spec, calls


def load(spec):
    bridge = models.load_model(spec.name)
    return bridge, models.model_info(bridge).fingerprint


def test_conversion_records_hashes_and_a_second_load_does_not_convert(gguf_tiny):
    spec, calls = gguf_tiny
    _, fp = load(spec)
    record = json.loads((model_cache.converted_dir(spec) / model_cache.WEIGHTS_FILE).read_text())
    assert len(record["files"]["model.safetensors"]["sha256"]) == 64
    identity = model_cache.weights_identity(model_cache.converted_dir(spec))
    assert record["files"]["model.safetensors"]["sha256"] in identity
    _, again = load(spec)
    assert len(calls) == 1 and again == fp


@pytest.mark.parametrize("damage", ["low-bits", "nan-bits", "low-bits-times-kept", "truncate",
                                    "delete-record-truncate"])
def test_damaged_conversion_is_reconverted(gguf_tiny, capfd, damage):
    spec, calls = gguf_tiny
    clean, fp = load(spec)
    want = clean(IDS)
    weights = model_cache.converted_dir(spec) / "model.safetensors"
    if damage == "low-bits":
        flip_bits(weights)
    elif damage == "nan-bits":
        flip_bits(weights, mask=0x7F, n=4096)
    elif damage == "low-bits-times-kept":  # even with the mtime put back, the ctime gives it away
        flip_bits(weights, keep_times=True)
    else:
        if damage == "delete-record-truncate":  # a conversion made before hashes were recorded
            (weights.parent / model_cache.WEIGHTS_FILE).unlink()
        with weights.open("r+b") as fh:
            fh.truncate(weights.stat().st_size - 1000)
    capfd.readouterr()
    bridge, again = load(spec)
    err = capfd.readouterr().err
    assert len(calls) == 2, "the damaged conversion must be redone"
    assert "is damaged" in err and "reconverting tiny-gguf" in err
    assert again == fp  # same weights again, same fingerprint: cached activations stay valid
    torch.testing.assert_close(bridge(IDS), want, atol=0, rtol=0)


def test_legacy_conversion_is_hashed_once_not_reconverted(gguf_tiny):
    spec, calls = gguf_tiny
    load(spec)
    (model_cache.converted_dir(spec) / model_cache.WEIGHTS_FILE).unlink()
    load(spec)
    assert len(calls) == 1 and (model_cache.converted_dir(spec) / model_cache.WEIGHTS_FILE).exists()
    assert model_cache.fast_check(model_cache.converted_dir(spec)) is None


def test_touched_but_intact_weights_are_rehashed_not_reconverted(gguf_tiny):
    spec, calls = gguf_tiny
    _, fp = load(spec)
    weights = model_cache.converted_dir(spec) / "model.safetensors"
    os.utime(weights, (time.time() + 5, time.time() + 5))
    assert model_cache.fast_check(weights.parent) is not None
    _, again = load(spec)
    assert len(calls) == 1 and again == fp and model_cache.fast_check(weights.parent) is None


def test_fingerprint_follows_the_weights(gguf_tiny):
    spec, calls = gguf_tiny
    _, fp = load(spec)
    target = model_cache.converted_dir(spec)
    identity = model_cache.weights_identity(target)
    calls.seed = 7  # the next conversion yields other weights (same spec, same GGUF name)
    (target / model_cache.SOURCE_FILE).unlink()  # an unfinished conversion: redone
    _, other = load(spec)
    assert len(calls) == 2 and other != fp and model_cache.weights_identity(target) != identity


def test_killed_conversion_temp_dirs_are_removed(gguf_tiny):
    spec, _ = gguf_tiny
    load(spec)
    target = model_cache.converted_dir(spec)
    stale = target.with_name(f".{target.name}.tmp-999999")
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\0" * 1024)
    other = target.with_name(".other-model.tmp-999999")  # another model's: not ours to touch
    other.mkdir()
    (target / "model.safetensors").unlink()  # forces the locked path
    load(spec)
    assert not stale.exists() and other.exists()


@pytest.mark.real_model
def test_smollm2_truncated_conversion_is_reconverted_from_the_gguf(tmp_path, monkeypatch, capfd):
    """The real GGUF path (~30 s): a copy of the converted SmolLM2, truncated, is reconverted."""
    spec = models.BUNDLED["smollm2-135m"]
    shared = model_cache.converted_dir(spec)
    if not (shared / model_cache.SOURCE_FILE).exists():
        pytest.skip("SmolLM2 not converted yet")
    monkeypatch.setenv("WORKBENCH_MODEL_CACHE", str(tmp_path / "models"))
    copy = model_cache.converted_dir(spec)
    shutil.copytree(shared, copy)
    model_cache.ensure_converted(spec)  # records (or re-checks) the hashes of the copy
    want = json.loads((copy / model_cache.WEIGHTS_FILE).read_text())["files"]["model.safetensors"]["sha256"]
    weights = copy / "model.safetensors"
    with weights.open("r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)
    model_cache.ensure_converted(spec)
    assert "reconverting smollm2-135m" in capfd.readouterr().err
    assert model_cache.verify(copy) is None
    got = json.loads((copy / model_cache.WEIGHTS_FILE).read_text())["files"]["model.safetensors"]["sha256"]
    assert got == want, "dequantising the same GGUF gives the same bytes"
