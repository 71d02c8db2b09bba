"""ActivationStore: hook activations on disk, content-addressed, computed only when missing.

Layout: `<root>/<model_fp>/<prompts_fp>/<hook>.safetensors` (one tensor per prompt, `p0`, `p1`, …,
unpadded) plus `manifest.json` (model, prompt set, and per hook: file size and sha256). Writes go to a
temp file and are renamed into place; a per-entry file lock serialises writers, so two processes
asking for the same entry compute it once and both read one valid copy. A file whose size, hash or
header does not match the manifest (truncated, foreign, written by another format version) is
reported and recomputed, never read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import save

from workbench import paths
from workbench.engine import hooks as hook_names
from workbench.engine.prompts import PromptSet, pad_batch, tokenize
from workbench.engine.reducers import (
    AttentionStats,
    ReducerRequest,
    request_fingerprint,
    stats_from_tensors,
    stats_to_tensors,
)
from workbench.engine.run import stream_forward
from workbench.models import model_info

FORMAT = "workbench-activations-1"
MANIFEST = "manifest.json"
LOCK_TIMEOUT_S = 3600
# Hooks whose tensors carry positions on two axes ([batch, head, q, k]).
_PAIRWISE_SUFFIXES = ("hook_pattern", "hook_attn_scores")


def default_cache_dir() -> Path:
    """`$WORKBENCH_CACHE_DIR`, else the user's cache dir (workbench.paths)."""
    return paths.cache_dir()


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

    def __getitem__(self, hook: str) -> list[torch.Tensor]:
        if hook not in self.hooks:
            raise KeyError(f"{hook!r} was not requested; available: {list(self.hooks)}")
        path = self.entry / _file_name(hook)
        with safe_open(str(path), framework="pt") as fh:
            return [fh.get_tensor(f"p{i}") for i in range(len(self.lengths))]


def prompt_keys(n_prompts: int) -> set[str]:
    return {f"p{i}" for i in range(n_prompts)}


def _file_name(hook: str) -> str:
    return f"{hook}.safetensors"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class ActivationStore:
    """On-disk activation cache keyed by model fingerprint × prompt-set fingerprint × hook."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry_dir(self, model_fp: str, prompts_fp: str) -> Path:
        return self.root / model_fp / prompts_fp

    def ensure(self, model, prompts: PromptSet, hooks: Iterable[str], *, batch_size: int = 8,
               progress: bool = True) -> CachedActivations:
        """Return activations for `hooks`, computing (batched) only those not validly on disk."""
        hooks = tuple(dict.fromkeys(hook_names.validate(model, hooks)))
        ids = tokenize(model, prompts)
        entry, report = self._ensure_items(
            model, prompts, hooks, len(ids),
            lambda missing: _compute(model, ids, missing, batch_size, progress, prompts.name))
        return CachedActivations(entry, hooks, tuple(len(x) for x in ids), report)

    def ensure_stats(self, model, prompts: PromptSet, request: ReducerRequest, *,
                     progress: bool = True) -> tuple[list[AttentionStats], EnsureReport]:
        """Streaming statistics per prompt (batch dim 1), stored like a hook under the request's hash."""
        ids = tokenize(model, prompts)
        name = f"stats-{request_fingerprint(request)}"

        def compute(_missing):
            from tqdm.auto import tqdm

            out: dict[str, torch.Tensor] = {}
            bar = tqdm(ids, desc=f"streaming stats · {prompts.name}", unit="prompt", disable=not progress)
            for i, seq in enumerate(bar):
                result = stream_forward(model, torch.tensor([seq]), request,
                                        output_positions=list(request.output_positions) or None)
                out.update({f"p{i}.{k}": t for k, t in stats_to_tensors(result.stats).items()})
            return {name: out}

        entry, report = self._ensure_items(model, prompts, (name,), len(ids), compute)
        if progress and report.reused:
            from tqdm.auto import tqdm

            tqdm.write(f"streaming stats for {prompts.name}: reused from the cache (no model run), {entry}")
        with safe_open(str(entry / _file_name(name)), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        per_prompt = []
        for i in range(len(ids)):
            prefix = f"p{i}."
            per_prompt.append(stats_from_tensors(
                {k[len(prefix):]: t for k, t in tensors.items() if k.startswith(prefix)}, request))
        return per_prompt, report

    def _ensure_items(self, model, prompts: PromptSet, names: Sequence[str], n_prompts: int,
                      compute) -> tuple[Path, EnsureReport]:
        """Under the entry's lock: reuse valid items, recompute missing or invalid ones, update the manifest."""
        info = model_info(model)
        entry = self.entry_dir(info.fingerprint, prompts.fingerprint)
        entry.mkdir(parents=True, exist_ok=True)
        report = EnsureReport()
        started = time.perf_counter()
        with FileLock(str(entry / ".lock"), timeout=LOCK_TIMEOUT_S):
            manifest = self._read_manifest(entry)
            missing = []
            for name in names:
                problem = self._check(entry, manifest, name, info.fingerprint, prompts.fingerprint, n_prompts)
                if problem is None:
                    report.reused.append(name)
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
                    report.computed.append(name)
                manifest.update(model=info.spec.name, model_fingerprint=info.fingerprint,
                                prompt_set=prompts.name, prompts_fingerprint=prompts.fingerprint,
                                n_prompts=n_prompts, format=FORMAT)
                _atomic_write_text(entry / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        report.seconds = time.perf_counter() - started
        return entry, report

    # ---- validation -------------------------------------------------------------------------------
    def _read_manifest(self, entry: Path) -> dict:
        path = entry / MANIFEST
        fresh = {"format": FORMAT, "hooks": {}}
        if not path.exists():
            return fresh
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            warnings.warn(f"{path} is unreadable ({exc}); its entries will be recomputed.", stacklevel=3)
            return fresh
        if manifest.get("format") != FORMAT or not isinstance(manifest.get("hooks"), dict):
            warnings.warn(f"{path} was written by another cache format ({manifest.get('format')!r}); "
                          "recomputing.", stacklevel=3)
            return fresh
        return manifest

    def _check(self, entry: Path, manifest: dict, hook: str, model_fp: str, prompts_fp: str,
               n_prompts: int) -> str | None:
        """None if the hook's file is valid, 'absent' if missing, else a reason it cannot be used."""
        record = manifest["hooks"].get(hook)
        path = entry / _file_name(hook)
        if record is None:
            return "absent" if not path.exists() else "not in manifest"
        if not path.exists():
            return "file missing"
        if path.stat().st_size != record.get("bytes"):
            return f"size {path.stat().st_size} != {record.get('bytes')} (truncated?)"
        if _sha256(path) != record.get("sha256"):
            return "checksum mismatch"
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                keys = set(fh.keys())
        except Exception as exc:  # safetensors raises its own error types for bad headers
            return f"unreadable header ({exc})"
        expected = {"format": FORMAT, "hook": hook, "model_fingerprint": model_fp,
                    "prompts_fingerprint": prompts_fp}
        if any(meta.get(k) != v for k, v in expected.items()):
            return "written for another model, prompt set, hook or format"
        if len(keys) != record.get("n_tensors") or not all(k.split(".")[0] in prompt_keys(n_prompts) for k in keys):
            return "wrong number of prompts or tensors"
        return None

    def _write_hook(self, entry: Path, hook: str, tensors: "Sequence[torch.Tensor] | dict[str, torch.Tensor]",
                    model_fp: str, prompts_fp: str) -> dict:
        """Write one item atomically: a list (one tensor per prompt) or a dict of named tensors."""
        final = entry / _file_name(hook)
        tmp = entry / f".{final.name}.tmp-{os.getpid()}"
        meta = {"format": FORMAT, "hook": hook, "model_fingerprint": model_fp,
                "prompts_fingerprint": prompts_fp}
        named = tensors if isinstance(tensors, dict) else {f"p{i}": t for i, t in enumerate(tensors)}
        payload = save({k: t.contiguous() for k, t in named.items()}, metadata=meta)
        with tmp.open("wb") as fh:
            fh.write(payload)
        first = next(iter(named.values()))
        record = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest(), "dtype": str(first.dtype),
                  "n_tensors": len(named), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.replace(tmp, final)
        return record

    # ---- listing ----------------------------------------------------------------------------------
    def entries(self) -> list[dict]:
        """One row per cached (model, prompt set) entry with its hooks and size on disk."""
        rows = []
        for manifest_path in sorted(self.root.glob(f"*/*/{MANIFEST}")):
            entry = manifest_path.parent
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, json.JSONDecodeError):
                manifest = {"hooks": {}, "model": "?", "prompt_set": "? (unreadable manifest)"}
            size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
            rows.append({"model": manifest.get("model"), "model_fingerprint": entry.parent.name,
                         "prompt_set": manifest.get("prompt_set"), "prompts_fingerprint": entry.name,
                         "n_prompts": manifest.get("n_prompts"), "hooks": len(manifest.get("hooks", {})),
                         "bytes": size, "path": str(entry)})
        return rows

    def remove(self, *, model_fingerprint: str | None = None, prompts_fingerprint: str | None = None,
               everything: bool = False) -> int:
        """Delete matching entries (under their locks); returns how many were removed."""
        if not (everything or model_fingerprint or prompts_fingerprint):
            raise ValueError("Say what to remove: a model fingerprint, a prompt-set fingerprint, or everything.")
        removed = 0
        for row in self.entries():
            if model_fingerprint and not row["model_fingerprint"].startswith(model_fingerprint):
                continue
            if prompts_fingerprint and not row["prompts_fingerprint"].startswith(prompts_fingerprint):
                continue
            entry = Path(row["path"])
            with FileLock(str(entry / ".lock"), timeout=LOCK_TIMEOUT_S):
                for f in entry.iterdir():
                    if f.name != ".lock":
                        f.unlink()
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
        return removed


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


@torch.inference_mode()
def _compute(model, ids: list[list[int]], hooks: Sequence[str], batch_size: int, progress: bool,
             label: str) -> dict[str, list[torch.Tensor]]:
    """Run the bridge in right-padded batches (sorted by length) and keep each prompt's real positions.

    Right padding is exact for causal models: real tokens never attend to the pads after them, and
    their positions are unchanged, so no attention mask is needed and the cached values equal an
    unbatched run.
    """
    from tqdm.auto import tqdm

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
                    piece = act[row, :, :n, :n] if hook.endswith(_PAIRWISE_SUFFIXES) else act[row, :n]
                    out[hook][i] = piece.detach().clone()
            bar.update(len(rows))
    return out
