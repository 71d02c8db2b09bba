"""Validation of activation-cache data: the manifest's schema and each item file against its record."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from workbench.core.integrity import safetensors_header, sha256_fd

FORMAT = "workbench-activations-1"
MANIFEST = "manifest.json"
# Hooks whose tensors carry positions on two axes ([batch, head, q, k]).
PAIRWISE_SUFFIXES = ("hook_pattern", "hook_attn_scores")


def prompt_keys(n_prompts: int) -> set[str]:
    return {f"p{i}" for i in range(n_prompts)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def record_problem(record: Any) -> str | None:
    """None if a manifest's per-hook record has the right fields and types, else what is wrong."""
    if not isinstance(record, dict):
        return f"record is a {type(record).__name__}, not an object"
    if not (_is_int(record.get("bytes")) and record["bytes"] >= 0 and _is_int(record.get("n_tensors"))):
        return "record's bytes/n_tensors are not integers"
    sha = record.get("sha256")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        return "record's sha256 is not a hex digest"
    if any(not isinstance(record.get(k, ""), str) for k in ("dtype", "created")):
        return "record's dtype/created are not strings"
    return None


def manifest_problem(manifest: Any) -> str | None:
    """None if the manifest's top level has the right shape and types, else what is wrong."""
    if not isinstance(manifest, dict):
        return f"it holds a {type(manifest).__name__}, not an object"
    if manifest.get("format") != FORMAT:
        return f"it was written by another cache format ({manifest.get('format')!r})"
    if not isinstance(manifest.get("hooks"), dict):
        return "its 'hooks' is not an object"
    for key in ("model", "model_fingerprint", "prompt_set", "prompts_fingerprint"):
        if not isinstance(manifest.get(key, ""), str):
            return f"its {key!r} is not a string"
    if not _is_int(manifest.get("n_prompts", 0)):
        return "its 'n_prompts' is not an integer"
    return None


def load_manifest(path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None) if the file holds a valid manifest; (None, reason) if damaged; (None, None) if absent."""
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:120]}"
    problem = manifest_problem(manifest)
    return (None, problem) if problem else (manifest, None)


def file_problem(fh: BinaryIO, record: dict, name: str, model_fp: str, prompts_fp: str,
                  lengths: tuple[int, ...]) -> str | None:
    """None if an open item file matches its manifest record, the entry and the prompts' lengths."""
    size = os.fstat(fh.fileno()).st_size
    if size != record["bytes"]:
        return f"size {size} != {record['bytes']} (truncated?)"
    if sha256_fd(fh) != record["sha256"]:
        return "checksum mismatch"
    try:
        header = safetensors_header(fh)
    except ValueError as exc:
        return str(exc)
    meta = header.pop("__metadata__", None) or {}
    expected = {"format": FORMAT, "hook": name, "model_fingerprint": model_fp, "prompts_fingerprint": prompts_fp}
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
        return "written for another model, prompt set, hook or format"
    keys = set(header)
    n = len(lengths)
    if len(keys) != record["n_tensors"] or not all(k.split(".")[0] in prompt_keys(n) for k in keys):
        return "wrong number of prompts or tensors"
    if name.startswith("stats-"):
        return None
    if keys != prompt_keys(n):
        return "a prompt's tensor is missing"
    pairwise = name.endswith(PAIRWISE_SUFFIXES)
    for i, length in enumerate(lengths):
        shape = header[f"p{i}"]["shape"]
        ok = (len(shape) >= 2 and shape[-1] == shape[-2] == length) if pairwise else (shape[:1] == [length])
        if not ok:
            return f"prompt {i} has shape {shape}, expected {length} positions"
    return None


def dir_size(entry: Path) -> int:
    size = 0
    for f in entry.glob("*"):
        try:
            size += f.stat().st_size if f.is_file() else 0
        except FileNotFoundError:  # removed while we listed
            pass
    return size
