"""Tests for workbench.engine.store.ActivationStore: reuse, exactness, corruption recovery, concurrency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.core.errors import HookError, PromptError
from workbench.core.paths import SOURCE_ROOT
from workbench.core.prompts import PromptSet, single_token_id, tokenize
from workbench.engine import hooks as H
from workbench.engine.reducers import ReducerRequest
from workbench.engine.store import MANIFEST, ActivationStore

# Different lengths, so batches of two are right-padded.
TEXTS = ("The quick brown fox jumps over the lazy dog.", "Hi", "Attention heads attend to tokens.", "x y z")
HOOKS = (H.z(0), H.pattern(1), H.resid_post(1))
ATOL = 1e-5


def prompt_set(texts=TEXTS, name="store-test") -> PromptSet:
    return PromptSet.from_texts(name, texts)


_REFERENCE: dict = {}


def direct(model, prompts: PromptSet, hook: str) -> list[torch.Tensor]:
    """Reference: one unbatched run_with_cache per prompt (all its hooks, memoised), batch dim dropped."""
    key = (id(model), prompts.fingerprint)
    if key not in _REFERENCE:
        caches = [model.run_with_cache(torch.tensor([ids]))[1] for ids in tokenize(model, prompts)]
        _REFERENCE[key] = [{name: cache[name][0] for name in cache.keys()} for cache in caches]
    return [per_prompt[hook] for per_prompt in _REFERENCE[key]]


def assert_matches_direct(model, acts, prompts: PromptSet, hooks=HOOKS) -> None:
    for hook in hooks:
        for i, (got, want) in enumerate(zip(acts[hook], direct(model, prompts, hook), strict=True)):
            assert got.shape == want.shape, f"{hook} prompt {i}: {tuple(got.shape)} != {tuple(want.shape)}"
            torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=f"{hook} prompt {i}")


def ensure(model, prompts=None, hooks=HOOKS, store=None):
    store = store or ActivationStore()
    return store.ensure(model, prompts or prompt_set(), hooks, batch_size=2, progress=False)


def hook_file(acts, hook: str) -> Path:
    return acts.entry / f"{hook}.safetensors"


def ensure_recovers(model, hook: str, match: str, prompts=None):
    """The next ensure warns with `match`, recomputes `hook` and returns correct values."""
    prompts = prompts or prompt_set()
    with pytest.warns(UserWarning, match=match):
        acts = ensure(model, prompts)
    assert hook in acts.report.computed
    assert_matches_direct(model, acts, prompts)
    return acts


# ---- reuse and exactness ----------------------------------------------------------------------------
def test_second_ensure_reuses_and_values_are_equal(tiny):
    first = ensure(tiny)
    assert sorted(first.report.computed) == sorted(HOOKS) and first.report.reused == []
    second = ensure(tiny)
    assert second.report.computed == [] and sorted(second.report.reused) == sorted(HOOKS)
    for hook in HOOKS:
        for a, b in zip(first[hook], second[hook], strict=True):
            assert torch.equal(a, b)


def test_only_missing_hooks_are_computed(tiny):
    ensure(tiny, hooks=(H.z(0),))
    report = ensure(tiny, hooks=(H.z(0), H.resid_post(1))).report
    assert report.reused == [H.z(0)] and report.computed == [H.resid_post(1)]


@pytest.mark.parametrize("hook", [
    H.z(0), H.z(1), H.pattern(0), H.pattern(1), H.attn_scores(1), H.resid_post(0), H.resid_post(1), H.q(1),
    H.k(0), H.rot_q(0), H.rot_k(0),
])
def test_batched_padded_values_equal_unbatched_runs(tiny, hook):
    """Right padding in batches of 2 must not change any real position (per-prompt shapes unpadded)."""
    prompts = prompt_set()
    acts = ensure(tiny, prompts, hooks=(hook,))
    lengths = [len(x) for x in tokenize(tiny, prompts)]
    assert len(set(lengths)) == len(lengths) and acts.lengths == tuple(lengths)
    assert_matches_direct(tiny, acts, prompts, hooks=(hook,))


def test_cached_shapes_per_prompt(tiny):
    prompts = prompt_set()
    acts = ensure(tiny, prompts)
    for n, z, pattern, resid in zip(acts.lengths, acts[H.z(0)], acts[H.pattern(1)], acts[H.resid_post(1)], strict=True):
        assert z.shape == (n, 4, 16)
        assert pattern.shape == (4, n, n)
        assert resid.shape == (n, 64)
        torch.testing.assert_close(pattern.sum(-1), torch.ones(4, n))


def test_broadcast_rotary_hook_with_batches(tiny):
    prompts = prompt_set()
    acts = ensure(tiny, prompts, hooks=("blocks.0.attn.hook_cos",))
    for n, cos in zip(acts.lengths, acts["blocks.0.attn.hook_cos"], strict=True):
        assert cos.shape[0] == n


def test_unrequested_hook_raises_key_error(tiny):
    acts = ensure(tiny, hooks=(H.z(0),))
    with pytest.raises(KeyError, match="was not requested"):
        acts[H.z(1)]


# ---- corruption ---------------------------------------------------------------------------------------
def test_truncated_file_is_recomputed(tiny):
    acts = ensure(tiny)
    path = hook_file(acts, H.z(0))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    recovered = ensure_recovers(tiny, H.z(0), match="invalid.*truncated")
    assert recovered.report.recovered == [H.z(0)]
    assert path.stat().st_size == len(data)


def test_foreign_file_is_recomputed(tiny, tmp_path):
    """A valid safetensors file of another prompt set, copied over ours, is never read."""
    acts = ensure(tiny)
    foreign = ensure(tiny, prompt_set(("Other", "prompts entirely"), "foreign"), store=ActivationStore(tmp_path / "o"))
    shutil.copyfile(hook_file(foreign, H.pattern(1)), hook_file(acts, H.pattern(1)))
    ensure_recovers(tiny, H.pattern(1), match="invalid")


def test_foreign_file_with_matching_manifest_record_is_recomputed(tiny, tmp_path):
    """Even when size and checksum match the manifest, the header metadata must name this prompt set."""
    acts = ensure(tiny)
    foreign = ensure(tiny, prompt_set(("Other", "prompts entirely"), "foreign"), store=ActivationStore(tmp_path / "o"))
    shutil.copyfile(hook_file(foreign, H.z(0)), hook_file(acts, H.z(0)))
    ours = json.loads((acts.entry / MANIFEST).read_text())
    ours["hooks"][H.z(0)] = json.loads((foreign.entry / MANIFEST).read_text())["hooks"][H.z(0)]
    (acts.entry / MANIFEST).write_text(json.dumps(ours))
    ensure_recovers(tiny, H.z(0), match="invalid.*another model, prompt set")


def test_garbage_manifest_warns_and_recomputes(tiny):
    acts = ensure(tiny)
    (acts.entry / MANIFEST).write_text("{not json at all")
    with pytest.warns(UserWarning, match="unreadable"):
        again = ensure_recovers(tiny, H.z(0), match="invalid")
    assert sorted(again.report.computed) == sorted(HOOKS)
    assert json.loads((acts.entry / MANIFEST).read_text())["hooks"].keys() == set(HOOKS)


def test_manifest_of_another_format_is_recomputed(tiny):
    acts = ensure(tiny)
    manifest = json.loads((acts.entry / MANIFEST).read_text())
    (acts.entry / MANIFEST).write_text(json.dumps({**manifest, "format": "workbench-activations-0"}))
    with pytest.warns(UserWarning, match="another cache format"):
        again = ensure_recovers(tiny, H.z(0), match="invalid")
    assert sorted(again.report.computed) == sorted(HOOKS)
    assert ensure(tiny).report.computed == []


def test_deleted_file_is_recomputed(tiny):
    acts = ensure(tiny)
    hook_file(acts, H.resid_post(1)).unlink()
    ensure_recovers(tiny, H.resid_post(1), match="invalid.*file missing")


# ---- concurrent writers -----------------------------------------------------------------------------
WRITER = """
import json, sys
from workbench.core.prompts import PromptSet
from workbench.engine.store import ActivationStore
from workbench.models.loading import load_model
texts, hooks = json.loads(sys.argv[1]), json.loads(sys.argv[2])
acts = ActivationStore().ensure(load_model("tiny"), PromptSet.from_texts("store-test", texts), hooks,
                                batch_size=2, progress=False)
print(json.dumps({"computed": acts.report.computed, "reused": acts.report.reused}))
"""


def test_concurrent_writers_compute_once(tiny, tmp_path):
    args = [sys.executable, "-c", WRITER, json.dumps(TEXTS), json.dumps(HOOKS)]
    procs = [subprocess.Popen(args, env=dict(os.environ), cwd=SOURCE_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, errtext) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, errtext
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    computed = sorted(h for r in reports for h in r["computed"])
    assert computed == sorted(HOOKS), f"each hook computed exactly once under the lock, got {reports}"

    acts = ensure(tiny)
    assert acts.report.computed == [] and sorted(acts.report.reused) == sorted(HOOKS)
    assert not [p for p in ActivationStore().root.rglob("*") if ".tmp-" in p.name]
    fresh = ensure(tiny, store=ActivationStore(tmp_path / "fresh"))
    for hook in HOOKS:
        for a, b in zip(acts[hook], fresh[hook], strict=True):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# ---- streaming stats --------------------------------------------------------------------------------
def test_ensure_stats_is_cached_under_the_request(tiny):
    prompts = prompt_set()
    store = ActivationStore()
    request = ReducerRequest(key_sets={"bos": [0]}, offsets=(1,))
    first, report = store.ensure_stats(tiny, prompts, request, progress=False)
    assert len(report.computed) == 1 and report.computed[0].startswith("stats-")
    second, again = store.ensure_stats(tiny, prompts, request, progress=False)
    assert again.computed == [] and again.reused == report.computed
    lengths = [len(x) for x in tokenize(tiny, prompts)]
    for stats, cached, n in zip(first, second, lengths, strict=True):
        assert stats.distance.shape == (1, 2, 4, n)
        torch.testing.assert_close(stats.distance, cached.distance)
        torch.testing.assert_close(stats.key_mass["bos"], cached.key_mass["bos"])
        torch.testing.assert_close(stats.offset_mass[1], cached.offset_mass[1])
    other = ReducerRequest(key_sets={"bos": [0]}, offsets=(1, 2))
    _, third = store.ensure_stats(tiny, prompts, other, progress=False)
    assert third.computed and third.computed != report.computed


def test_ensure_stats_match_patterns(tiny):
    """Cached row statistics agree with the bridge's own attention patterns."""
    prompts = prompt_set()
    stats, _ = ActivationStore().ensure_stats(tiny, prompts, ReducerRequest(key_sets={"bos": [0]}), progress=False)
    for s, pattern in zip(stats, direct(tiny, prompts, H.pattern(1)), strict=True):
        torch.testing.assert_close(s.key_mass["bos"][0, 1], pattern[:, :, 0], atol=1e-4, rtol=0)
        torch.testing.assert_close(s.argmax_val[0, 1], pattern.max(-1).values, atol=1e-4, rtol=0)


# ---- bad input --------------------------------------------------------------------------------------
def test_unknown_hook_suggests_a_name(tiny):
    with pytest.raises(HookError, match=r"did you mean 'blocks\.0\.attn\.hook_z'"):
        ensure(tiny, hooks=("blocks.0.attn.hook_zz",))


def test_no_hooks_is_an_error(tiny):
    with pytest.raises(HookError, match="No hook names"):
        ensure(tiny, hooks=())


def test_empty_prompt_set():
    with pytest.raises(PromptError, match="is empty"):
        PromptSet.from_texts("empty", [])
    with pytest.raises(PromptError, match=r"prompts \[1\] are empty"):
        PromptSet.from_texts("blank", ["ok", "   "])


def test_prompt_longer_than_context(tiny):
    prompts = prompt_set(("short", "a" * 600), "long")
    with pytest.raises(PromptError, match=r"Prompt 1 of 'long' has 601 tokens; the limit is 512"):
        ensure(tiny, prompts)
    assert ActivationStore().entries() == []


def test_single_token_id_lists_the_pieces(tiny):
    assert single_token_id(tiny, "a") == tokenize(tiny, prompt_set(("a",)))[0][1]
    with pytest.raises(PromptError, match=r"splits into \['a', 'b', 'c'\]"):
        single_token_id(tiny, "abc")


# ---- listing and removal ----------------------------------------------------------------------------
def test_entries_and_remove_everything(tiny):
    store = ActivationStore()
    assert store.entries() == []
    acts = ensure(tiny)
    ensure(tiny, prompt_set(("another set",), "second"))
    rows = store.entries()
    assert len(rows) == 2
    row = next(r for r in rows if r["prompt_set"] == "store-test")
    assert row["model"] == "tiny" and row["n_prompts"] == len(TEXTS) and row["hooks"] == len(HOOKS)
    assert row["bytes"] > 0 and Path(row["path"]) == acts.entry
    assert store.remove(everything=True) == 2
    assert store.entries() == [] and not acts.entry.exists()


def test_remove_by_prompt_fingerprint_prefix(tiny):
    store = ActivationStore()
    keep = ensure(tiny, prompt_set(("kept",), "keep"))
    drop = ensure(tiny)
    assert store.remove(prompts_fingerprint=drop.entry.name[:6]) == 1
    assert [r["prompt_set"] for r in store.entries()] == ["keep"] and keep.entry.exists()


def test_remove_without_arguments_raises():
    with pytest.raises(ValueError, match="Say what to remove"):
        ActivationStore().remove()
