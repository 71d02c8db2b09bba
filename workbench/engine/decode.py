"""Greedy decoding on the streaming twin with a KV cache, optionally collecting per-step head statistics.

As in Wu et al.'s code the prompt minus its last token is prefilled (SDPA); step t's statistics belong to the
query that produces token t. Active edits (`edits.apply.editing`) apply throughout. Stops at EOS/end-of-turn,
or a newline after non-blank text (the official code stops at any newline; SmolLM2 starts with blank lines).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch

from workbench.engine.reducers import ReducerRequest
from workbench.engine.run import stream_forward
from workbench.models.loading import model_info


@dataclass
class Generation:
    tokens: list[int]
    text: str
    argmax_pos: torch.Tensor | None = None  # [steps, L, H] argmax key of the query producing token t
    key_mass: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [steps, L, H]
    prefill_s: float = 0.0
    decode_s: float = 0.0


def _stop_ids(tok) -> set[int]:
    ids = {tok.eos_token_id}
    for name in ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<eos>"):
        i = tok.convert_tokens_to_ids(name)
        if isinstance(i, int) and i != tok.unk_token_id:
            ids.add(i)
    return {i for i in ids if i is not None}


@torch.inference_mode()
def greedy_generate(model, prompt_ids: Sequence[int], *, max_new_tokens: int = 32, stats: bool = False,
                    key_sets: Callable[[int], Mapping[str, Sequence[int]]] | None = None,
                    stop_at_newline: bool = True) -> Generation:
    """Greedy continuation of one prompt; with `stats`, per-step row argmax (and key-set masses)."""
    from transformers import DynamicCache

    info = model_info(model)
    tok = info.tokenizer
    stops = _stop_ids(tok)
    ids = list(prompt_ids)
    cache = DynamicCache(config=info.hf_config)
    start = time.perf_counter()
    if len(ids) > 1:
        stream_forward(model, torch.tensor([ids[:-1]]), None, cache=cache)
    prefill = time.perf_counter() - start
    inp, out, argmax, masses = ids[-1], [], [], {}
    for step in range(max_new_tokens):
        pos = len(ids) - 1 + step  # absolute position of the query fed at this step
        request = None
        if stats:
            request = ReducerRequest(row_argmax=True, column_sums=False, distance=False,
                                     key_sets=dict(key_sets(pos)) if key_sets else {})
        res = stream_forward(model, torch.tensor([[inp]]), request, cache=cache, logits="last")
        nxt = int(res.logits[0, -1].argmax())
        if stats:
            argmax.append(res.stats.argmax_pos[0, :, :, 0])
            for name, value in res.stats.key_mass.items():
                masses.setdefault(name, []).append(value[0, :, :, 0])
        out.append(nxt)
        if nxt in stops:
            break
        if stop_at_newline and "\n" in tok.decode([nxt]) and tok.decode(out).strip():
            break
        inp = nxt
    decode = time.perf_counter() - start - prefill
    return Generation(tokens=out, text=tok.decode([t for t in out if t not in stops]),
                      argmax_pos=torch.stack(argmax) if argmax else None,
                      key_mass={k: torch.stack(v) for k, v in masses.items()}, prefill_s=prefill, decode_s=decode)
