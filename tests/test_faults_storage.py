"""Fault injection into the activation cache and the results catalog (the model cache: test_faults_model_cache).

Each test damages files the way a disk, a kill or a careless `cp` does (bit flips, truncation, bad JSON,
wrong types, copies, concurrent removal, leftover temp files) and checks the damage is detected and either
repaired (recomputed) or refused with a clear error. Everything runs in temp directories.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from damage import flip_bits

from workbench.core.paths import SOURCE_ROOT
from workbench.core.prompts import PromptSet
from workbench.engine import hooks as H
from workbench.engine.reducers import ReducerRequest
from workbench.engine.store import MANIFEST, ActivationStore
from workbench.results import runs as results
from workbench.results.runs import ResultsError, find_runs, load_run, load_summary, load_table, save_run

TEXTS = ("The quick brown fox jumps over the lazy dog.", "Hi", "x y z")
HOOKS = (H.z(0), H.pattern(1))


# ==== the activation cache ==========================================================================
def prompts() -> PromptSet:
    return PromptSet.from_texts("faults", TEXTS)


def reference(model, hook):
    fresh = ActivationStore(Path(os.environ["WORKBENCH_CACHE_DIR"]) / "reference")
    return fresh.ensure(model, prompts(), (hook,), progress=False)[hook]


def ensure(model, store=None):
    return (store or ActivationStore()).ensure(model, prompts(), HOOKS, batch_size=2, progress=False)


def assert_correct(model, acts):
    for hook in HOOKS:
        for got, want in zip(acts[hook], reference(model, hook), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("text", [b"[]", b"null", b"\xff\xfe not utf-8 \x80", b'"a string"', b"{}",
                                  b'{"format": "workbench-activations-1", "hooks": []}'])
def test_damaged_manifest_is_rebuilt(tiny, text):
    acts = ensure(tiny)
    (acts.entry / MANIFEST).write_bytes(text)
    assert ActivationStore().entries()[0]["hooks"] == 0  # listing a damaged entry works
    with pytest.warns(UserWarning):
        again = ensure(tiny)
    assert sorted(again.report.computed) == sorted(HOOKS)
    assert_correct(tiny, again)
    assert ensure(tiny).report.computed == []  # and the rebuilt manifest is valid


@pytest.mark.parametrize("record", ["a string", None, 3, [], {"bytes": "12", "sha256": "x", "n_tensors": 2},
                                    {"bytes": 1, "sha256": "0" * 64, "n_tensors": True}])
def test_damaged_hook_record_is_recomputed_alone(tiny, record):
    acts = ensure(tiny)
    manifest = json.loads((acts.entry / MANIFEST).read_text())
    manifest["hooks"][H.z(0)] = record
    (acts.entry / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match="damaged"):
        again = ensure(tiny)
    assert again.report.computed == [H.z(0)] and again.report.reused == [H.pattern(1)]
    assert_correct(tiny, again)


def rewrite_consistently(entry: Path, hook: str, tensors: dict) -> None:
    """Replace a hook file with other tensors and update its manifest record to match (size and hash)."""
    from safetensors import safe_open
    from safetensors.torch import save

    path = entry / f"{hook}.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    payload = save(tensors, metadata=meta)
    path.write_bytes(payload)
    manifest = json.loads((entry / MANIFEST).read_text())
    manifest["hooks"][hook].update(bytes=len(payload), sha256=hashlib.sha256(payload).hexdigest(),
                                   n_tensors=len(tensors))
    (entry / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", ["flip", "truncate", "wrong-shape", "missing-tensor", "extra-tensor"])
def test_damaged_tensor_file_is_recomputed(tiny, damage):
    acts = ensure(tiny)
    path = acts.entry / f"{H.z(0)}.safetensors"
    good = acts[H.z(0)]
    if damage == "flip":
        flip_bits(path, offset_from_data=0, n=8, keep_times=True)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:-16])
    elif damage == "wrong-shape":
        rewrite_consistently(acts.entry, H.z(0), {f"p{i}": t[:-1].contiguous() for i, t in enumerate(good)})
    elif damage == "missing-tensor":
        rewrite_consistently(acts.entry, H.z(0), {"p0": good[0], "p1": good[1], "p3": good[2]})
    else:
        rewrite_consistently(acts.entry, H.z(0), {**{f"p{i}": t for i, t in enumerate(good)},
                                                  "p1.extra": good[0].clone()})
    with pytest.warns(UserWarning, match="invalid"):
        again = ensure(tiny)
    assert again.report.computed == [H.z(0)]
    assert_correct(tiny, again)


def test_reader_survives_removal_between_ensure_and_read(tiny):
    """Deterministic interleaving: the old store read files after releasing the lock."""
    store = ActivationStore()
    acts = ensure(tiny, store)
    assert store.remove(everything=True) == 1 and not acts.entry.exists()
    assert_correct(tiny, acts)  # read through the handles opened under the lock


def test_concurrent_remove_all_never_crashes_a_reader(tiny):
    store = ActivationStore()
    stop, errors = threading.Event(), []

    def remover():
        for _ in range(200):
            if stop.is_set():
                return
            try:
                store.remove(everything=True)
            except Exception as exc:  # noqa: BLE001 - any crash is the failure we look for
                errors.append(f"remover: {exc!r}")
            time.sleep(0.002)

    thread = threading.Thread(target=remover)
    thread.start()
    try:
        want = {hook: reference(tiny, hook) for hook in HOOKS}
        for _ in range(25):
            acts = ensure(tiny, store)
            for hook in HOOKS:
                for got, ref in zip(acts[hook], want[hook], strict=True):
                    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
            stats, _ = store.ensure_stats(tiny, prompts(), ReducerRequest(), progress=False)
            assert len(stats) == len(TEXTS)
    finally:
        stop.set()
        thread.join()
    assert errors == []


REMOVER = """
import sys, time
from workbench.engine.store import ActivationStore
store = ActivationStore(sys.argv[1])
print("ready", flush=True)
for _ in range(400):
    store.remove(everything=True)
    time.sleep(0.003)
"""


def test_remove_all_in_another_process_never_crashes_a_reader(tiny):
    import subprocess
    import sys

    store = ActivationStore()
    store.root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", REMOVER, str(store.root)], cwd=SOURCE_ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        want = {hook: reference(tiny, hook) for hook in HOOKS}
        for _ in range(15):
            acts = ensure(tiny, store)
            for hook in HOOKS:
                for got, ref in zip(acts[hook], want[hook], strict=True):
                    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    finally:
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def test_killed_writer_temp_files_are_cleaned_on_ls_and_write(tiny):
    store = ActivationStore()
    acts = ensure(tiny, store)
    stale = acts.entry / f".{H.z(0)}.safetensors.tmp-999999"
    stale.write_bytes(b"\0" * (1 << 20))
    orphan_entry = acts.entry.parent / "0123456789abcdef"  # killed during its first write: no manifest yet
    orphan_entry.mkdir()
    orphan = orphan_entry / ".manifest.json.tmp-999999"
    orphan.write_bytes(b"{")
    rows = store.entries()
    assert not stale.exists() and not orphan.exists() and len(rows) == 1
    stale.write_bytes(b"\0" * 10)
    ensure(tiny, store)
    assert not stale.exists()


# ==== results ========================================================================================
def scores() -> pd.DataFrame:
    return pd.DataFrame([{"analysis": "induction", "model": "tiny", "prompt_set": "p", "layer": la, "head": h,
                          "score": la + h / 10} for la in range(2) for h in range(3)])


def save(tmp_path, **kw):
    return save_run(scores(), params={}, model_fingerprint="m", prompts_fingerprint="p", timings={},
                    results_dir=tmp_path / "res", **kw)


def flip_one_bit(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_bit_in_scores_is_refused_and_listed_as_skipped(tmp_path):
    record = save(tmp_path)
    run_dir = tmp_path / "res" / "induction" / record.run_id
    parquet = run_dir / "scores.parquet"
    for at in range(0, parquet.stat().st_size, 97):  # wherever the bit is, it is caught
        flip_one_bit(parquet, at)
        with pytest.raises(ResultsError, match=rf"run {record.run_id}: scores.parquet does not match.*re-run"):
            load_run(record.run_id, tmp_path / "res")
        flip_one_bit(parquet, at)
    load_run(record.run_id, tmp_path / "res")
    flip_one_bit(parquet, parquet.stat().st_size // 2)
    with pytest.warns(UserWarning, match=f"skipping run.*{record.run_id}.*damaged"):
        assert find_runs(tmp_path / "res").empty


def test_flipped_table_and_summary_are_refused(tmp_path):
    record = save(tmp_path, tables={"tokens": pd.DataFrame({"x": range(50)})}, summary={"acc": 0.5})
    run_dir = tmp_path / "res" / "induction" / record.run_id
    assert load_table(record.run_id, "tokens", tmp_path / "res")["x"].tolist() == list(range(50))
    flip_one_bit(run_dir / "tables" / "tokens.parquet", 40)
    with pytest.raises(ResultsError, match="tables/tokens.parquet does not match"):
        load_table(record.run_id, "tokens", tmp_path / "res")
    (run_dir / "summary.json").write_text('{"acc": 0.9}\n')
    with pytest.raises(ResultsError, match="summary.json does not match"):
        load_summary(record.run_id, tmp_path / "res")


def test_copied_run_never_shadows_the_original(tmp_path):
    record = save(tmp_path)
    root = tmp_path / "res"
    original = root / "induction" / record.run_id
    shutil.copytree(original, root / "induction" / "20990101T000000Z-copycopy")
    shutil.copytree(original, root / "other" / record.run_id)  # same id under another analysis
    with pytest.warns(UserWarning, match="a copied run"):
        runs = find_runs(root)
    assert runs["run_id"].is_unique and list(runs["path"]) == [str(original)]
    _, loaded = load_run(record.run_id, root)  # the bare id reaches the original, not the copy
    assert loaded == record


def test_new_run_ids_are_unique(tmp_path, monkeypatch):
    import uuid as uuid_mod

    first = save(tmp_path)
    taken = first.run_id.split("-")[1]
    draws = iter([uuid_mod.UUID(taken + "0" * 24), uuid_mod.UUID(taken + "0" * 24), uuid_mod.UUID("1" * 32)])
    monkeypatch.setattr(results, "_utcnow", lambda: pd.Timestamp(first.created).to_pydatetime())
    monkeypatch.setattr(results.uuid, "uuid4", lambda: next(draws))
    second = save(tmp_path)
    assert second.run_id != first.run_id and second.run_id.endswith("-11111111")


def test_stale_result_temp_dirs_are_cleaned(tmp_path):
    save(tmp_path)
    analysis_dir = tmp_path / "res" / "induction"
    stale, live = analysis_dir / ".x.tmp-999999", analysis_dir / f".y.tmp-{os.getpid()}"
    for d in (stale, live):
        d.mkdir()
        (d / "scores.parquet").write_bytes(b"\0" * 1000)
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(live, (old, old))
    find_runs(tmp_path / "res")
    assert not stale.exists() and live.exists()
