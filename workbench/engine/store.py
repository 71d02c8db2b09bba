"""ActivationStore: hook activations on disk, content-addressed, computed only when missing.

Layout: `<root>/<model_fp>/<prompts_fp>/<hook>.safetensors` (tensors `p0`, `p1`, …, unpadded) plus
`manifest.json` (per hook: size and sha256). Writes are atomic; a per-entry file lock in `<root>/.locks/`
serialises writers, so concurrent requests compute an entry once. A damaged manifest or a file whose size,
hash, header or shapes do not match is recomputed, never read. Readers hold the lock while opening, so a
concurrent `remove` cannot pull a file from under them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import torch
from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save
from tqdm.auto import tqdm

from workbench.core import paths
from workbench.core.integrity import atomic_write_bytes, atomic_write_text, remove_temps
from workbench.core.prompts import PromptSet, pad_batch, tokenize
from workbench.engine import hooks as hook_names
from workbench.engine.reducers import (
    AttentionStats,
    ReducerRequest,
    request_fingerprint,
    stats_from_tensors,
    stats_to_tensors,
)
from workbench.engine.run import stream_forward
from workbench.engine.store_checks import (
    FORMAT,
    MANIFEST,
    PAIRWISE_SUFFIXES,
    dir_size,
    file_problem,
    load_manifest,
    record_problem,
)
from workbench.models.loading import model_info

LOCK_TIMEOUT_S = 3600


@dataclass
class EnsureReport:
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)  # invalid files found and recomputed
    seconds: float = 0.0


@dataclass
class CachedActivations:
    """Activations of one (model, prompt set) entry; `[hook]` loads a list of per-prompt tensors."""

    entry: Path
    hooks: tuple[str, ...]
    lengths: tuple[int, ...]
    report: EnsureReport
    handles: dict[str, BinaryIO] = field(default_factory=dict, repr=False)  # opened (checked) under the lock

    def __getitem__(self, hook: str) -> list[torch.Tensor]:
        if hook not in self.hooks:
            raise KeyError(f"{hook!r} was not requested; available: {list(self.hooks)}")
        tensors = _read_tensors(self.handles[hook])
        return [tensors[f"p{i}"] for i in range(len(self.lengths))]

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()

    def __del__(self) -> None:
        self.close()


def _file_name(hook: str) -> str:
    return f"{hook}.safetensors"


def _read_tensors(fh: BinaryIO) -> dict[str, torch.Tensor]:
    """Every tensor of an open file: through /proc/self/fd (mmap; works after unlink) or its bytes."""
    proc = Path(f"/proc/self/fd/{fh.fileno()}")
    if proc.exists():
        with safe_open(str(proc), framework="pt") as st:
            return {k: st.get_tensor(k) for k in st.keys()}
    fh.seek(0)
    return load_bytes(fh.read())


class ActivationStore:
    """On-disk activation cache keyed by model fingerprint × prompt-set fingerprint × hook."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else paths.cache_dir()

    def entry_dir(self, model_fp: str, prompts_fp: str) -> Path:
        return self.root / model_fp / prompts_fp

    def lock(self, entry: Path) -> FileLock:
        """The entry's lock; it lives in `<root>/.locks`, so removing the entry leaves it in place."""
        locks = self.root / ".locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{entry.parent.name}-{entry.name}.lock"), timeout=LOCK_TIMEOUT_S)

    def ensure(self, model, prompts: PromptSet, hooks: Iterable[str], *, batch_size: int = 8,
               progress: bool = True) -> CachedActivations:
        """Return activations for `hooks`, computing (batched) only those not validly on disk."""
        hooks = tuple(dict.fromkeys(hook_names.validate(model, hooks)))
        ids = tokenize(model, prompts)
        lengths = tuple(len(x) for x in ids)
        entry, report, handles = self._ensure_items(
            model, prompts, hooks, lengths,
            lambda missing: _compute(model, ids, missing, batch_size, progress, prompts.name))
        return CachedActivations(entry, hooks, lengths, report, handles)

    def ensure_stats(self, model, prompts: PromptSet, request: ReducerRequest, *,
                     progress: bool = True) -> tuple[list[AttentionStats], EnsureReport]:
        """Streaming statistics per prompt (batch dim 1), stored like a hook under the request's hash."""
        ids = tokenize(model, prompts)
        name = f"stats-{request_fingerprint(request)}"

        def compute(_missing):
            out: dict[str, torch.Tensor] = {}
            bar = tqdm(ids, desc=f"streaming stats · {prompts.name}", unit="prompt", disable=not progress)
            for i, seq in enumerate(bar):
                result = stream_forward(model, torch.tensor([seq]), request,
                                        output_positions=list(request.output_positions) or None)
                out.update({f"p{i}.{k}": t for k, t in stats_to_tensors(result.stats).items()})
            return {name: out}

        entry, report, handles = self._ensure_items(model, prompts, (name,), tuple(len(x) for x in ids), compute)
        if progress and report.reused:
            tqdm.write(f"streaming stats for {prompts.name}: reused from the cache (no model run), {entry}")
        with handles[name] as fh:
            tensors = _read_tensors(fh)
        per_prompt = []
        for i in range(len(ids)):
            prefix = f"p{i}."
            per_prompt.append(stats_from_tensors(
                {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}, request))
        return per_prompt, report

    def _ensure_items(self, model, prompts: PromptSet, names: Sequence[str], lengths: tuple[int, ...],
                      compute) -> tuple[Path, EnsureReport, dict[str, BinaryIO]]:
        """Under the lock: reuse valid items, recompute the rest, update the manifest, open every item (a snapshot)."""
        info = model_info(model)
        entry = self.entry_dir(info.fingerprint, prompts.fingerprint)
        report = EnsureReport()
        started = time.perf_counter()
        handles: dict[str, BinaryIO] = {}
        with self.lock(entry):
            entry.mkdir(parents=True, exist_ok=True)
            remove_temps(entry, only_stale=False)  # we hold the writers' lock: these are from killed writers
            manifest = self._read_manifest(entry)
            missing = []
            for name in names:
                problem, fh = self._open_checked(entry, manifest, name, info.fingerprint, prompts.fingerprint,
                                                 lengths)
                if problem is None:
                    report.reused.append(name)
                    handles[name] = fh
                    continue
                if problem != "absent":
                    warnings.warn(f"Cache file for {name} in {entry} is invalid ({problem}); recomputing.",
                                  stacklevel=3)
                    report.recovered.append(name)
                missing.append(name)
            if missing:
                computed = compute(missing)
                for name in missing:
                    manifest["hooks"][name] = self._write_hook(entry, name, computed[name], info.fingerprint,
                                                               prompts.fingerprint)
                    handles[name] = (entry / _file_name(name)).open("rb")
                    report.computed.append(name)
                manifest.update(model=info.spec.name, model_fingerprint=info.fingerprint,
                                prompt_set=prompts.name, prompts_fingerprint=prompts.fingerprint,
                                n_prompts=len(lengths), format=FORMAT)
                atomic_write_text(entry / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        report.seconds = time.perf_counter() - started
        return entry, report, handles

    # ---- validation -------------------------------------------------------------------------------
    def _read_manifest(self, entry: Path, *, warn: bool = True) -> dict:
        """The entry's manifest, validated; a fresh one if absent or damaged. Bad hook records are dropped."""
        path = entry / MANIFEST
        fresh = {"format": FORMAT, "hooks": {}}
        manifest, problem = load_manifest(path)
        if manifest is None:
            if problem and warn:
                warnings.warn(f"{path} is unreadable ({problem}); its entries will be recomputed.", stacklevel=3)
            return fresh
        hooks = {}
        for name, record in manifest["hooks"].items():
            problem = record_problem(record)
            if problem is None:
                hooks[name] = record
            elif warn:
                warnings.warn(f"{path}: the record of {name} is damaged ({problem}); recomputing it.", stacklevel=3)
        return {**manifest, "hooks": hooks}

    def _open_checked(self, entry: Path, manifest: dict, name: str, model_fp: str, prompts_fp: str,
                      lengths: tuple[int, ...]) -> tuple[str | None, BinaryIO | None]:
        """(None, open file) if the item's file is valid; else ('absent' or the reason, None)."""
        record = manifest["hooks"].get(name)
        path = entry / _file_name(name)
        if record is None:
            return ("absent" if not path.exists() else "not in manifest"), None
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return "file missing", None
        try:
            problem = file_problem(fh, record, name, model_fp, prompts_fp, lengths)
        except OSError as exc:
            problem = f"unreadable ({exc})"
        if problem is not None:
            fh.close()
            return problem, None
        return None, fh

    def _write_hook(self, entry: Path, hook: str, tensors: "Sequence[torch.Tensor] | dict[str, torch.Tensor]",
                    model_fp: str, prompts_fp: str) -> dict:
        """Write one item atomically: a list (one tensor per prompt) or a dict of named tensors."""
        final = entry / _file_name(hook)
        meta = {"format": FORMAT, "hook": hook, "model_fingerprint": model_fp,
                "prompts_fingerprint": prompts_fp}
        named = tensors if isinstance(tensors, dict) else {f"p{i}": t for i, t in enumerate(tensors)}
        payload = save({k: t.contiguous() for k, t in named.items()}, metadata=meta)
        first = next(iter(named.values()))
        record = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(), "dtype": str(first.dtype),
                  "n_tensors": len(named), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write_bytes(final, payload)
        return record

    # ---- listing ----------------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """One row per cached (model, prompt set) entry with its hooks and size; deletes stale temp files."""
        rows = []
        for entry in sorted(p for p in self.root.glob("*/*") if not p.parent.name.startswith(".") and p.is_dir()):
            self._clean_if_idle(entry)
            manifest_path = entry / MANIFEST
            if not manifest_path.exists():
                continue
            manifest, problem = load_manifest(manifest_path)
            if manifest is None:
                manifest = {"hooks": {}, "model": "?", "prompt_set": f"? (damaged manifest: {problem})"}
            rows.append({"model": manifest.get("model"), "model_fingerprint": entry.parent.name,
                         "prompt_set": manifest.get("prompt_set"), "prompts_fingerprint": entry.name,
                         "n_prompts": manifest.get("n_prompts"), "hooks": len(manifest.get("hooks", {})),
                         "bytes": dir_size(entry), "path": str(entry)})
        return rows

    def _clean_if_idle(self, entry: Path) -> None:
        """Delete temp files of an entry whose lock is free (no writer can be running)."""
        lock = self.lock(entry)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return
        try:
            remove_temps(entry, only_stale=False)
        finally:
            lock.release()

    def remove(self, *, model_fingerprint: str | None = None, prompts_fingerprint: str | None = None,
               everything: bool = False) -> int:
        """Delete matching entries (each under its lock); returns how many were removed."""
        if not (everything or model_fingerprint or prompts_fingerprint):
            raise ValueError("Say what to remove: a model fingerprint, a prompt-set fingerprint, or everything.")
        removed = 0
        for row in self.entries():
            if model_fingerprint and not row["model_fingerprint"].startswith(model_fingerprint):
                continue
            if prompts_fingerprint and not row["prompts_fingerprint"].startswith(prompts_fingerprint):
                continue
            entry = Path(row["path"])
            with self.lock(entry):
                shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed


@torch.inference_mode()
def _compute(model, ids: list[list[int]], hooks: Sequence[str], batch_size: int, progress: bool,
             label: str) -> dict[str, list[torch.Tensor]]:
    """Run the bridge in right-padded, length-sorted batches; exact for causal models (no mask needed)."""
    info = model_info(model)
    pad_id = info.tokenizer.pad_token_id if info.tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: dict[str, list] = {h: [None] * len(ids) for h in hooks}
    wanted = set(hooks)
    with tqdm(total=len(ids), desc=f"caching {len(hooks)} hooks · {label}", unit="prompt",
              disable=not progress) as bar:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch, _ = pad_batch([ids[i] for i in rows], pad_id)
            _, cache = model.run_with_cache(batch, names_filter=lambda name: name in wanted)
            for hook in hooks:
                act = cache[hook]
                for j, i in enumerate(rows):
                    n = len(ids[i])
                    row = 0 if act.shape[0] == 1 else j  # rotary cos/sin are shared by the batch
                    piece = act[row, :, :n, :n] if hook.endswith(PAIRWISE_SUFFIXES) else act[row, :n]
                    out[hook][i] = piece.detach().clone()
            bar.update(len(rows))
    return out
