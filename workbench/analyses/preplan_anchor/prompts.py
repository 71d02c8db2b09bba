"""Reasoning traces: the model's greedy step-by-step answers to data/reasoning/arithmetic.json (instruct template).
Cached as JSON under the activation cache (`traces/<model fp>/<prompts fp>-<max_new_tokens>.json`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tqdm.auto import tqdm

from workbench.core.errors import PromptError
from workbench.core.integrity import atomic_write_text
from workbench.core.paths import cache_dir, shipped
from workbench.core.prompts import PromptSet, tokenize
from workbench.models.loading import model_info

DATA = shipped("data", "reasoning", "arithmetic.json")
INSTRUCTION = "Solve the problem step by step, then write the final number after 'Answer:'."


def load_problems(path: Path = DATA) -> list[dict]:
    try:
        problems = json.loads(Path(path).read_text())["problems"]
    except (OSError, ValueError, KeyError) as exc:
        raise PromptError(f"Cannot read reasoning problems from {path} ({exc}); it must be JSON with a "
                          "'problems' list of {question, answer}.") from exc
    if not problems:
        raise PromptError(f"{path} holds no problems.")
    return problems


def problem_prompts(model, n_problems: int = 8) -> PromptSet:
    """The first `n_problems` problems as chat-formatted prompts (BOS comes from the template)."""
    tok = model_info(model).tokenizer
    problems = load_problems()[:n_problems]
    if n_problems < 1:
        raise PromptError("Ask for at least one problem.")
    texts, meta = [], []
    for p in problems:
        messages = [{"role": "user", "content": f"{p['question']} {INSTRUCTION}"}]
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"Question: {messages[0]['content']}\nReasoning:"
        texts.append(text)
        meta.append({"answer": str(p["answer"]), "problem": int(p["id"])})
    starts_with_bos = tok.bos_token is not None and all(t.startswith(tok.bos_token) for t in texts)
    return PromptSet(name=f"arithmetic-{len(texts)}", texts=tuple(texts), metadata=tuple(meta),
                     prepend_bos=not starts_with_bos, description="arithmetic word problems, chat template")


def extract_answer(text: str) -> str | None:
    """The number after the last 'Answer:' (else the last number in the text)."""
    tail = text.rsplit("Answer:", 1)[-1] if "Answer:" in text else text
    numbers = re.findall(r"-?\d+(?:\.\d+)?", tail.replace(",", ""))
    if not numbers:
        return None
    value = numbers[0] if "Answer:" in text else numbers[-1]
    return value[:-2] if value.endswith(".0") else value


def generate_traces(model, prompts: PromptSet, max_new_tokens: int = 256, *, progress: bool = True) -> PromptSet:
    """Greedy step-by-step traces (prompt + continuation), cached; metadata adds prompt_len, answer check."""
    import torch

    info = model_info(model)
    path = cache_dir() / "traces" / info.fingerprint / f"{prompts.fingerprint}-{max_new_tokens}.json"
    if path.exists():
        return _traces_from_json(json.loads(path.read_text()), prompts, max_new_tokens, info.tokenizer)
    tok, twin = info.tokenizer, info.stream_model
    records = []
    for i, ids in enumerate(tqdm(tokenize(model, prompts), desc="generating traces", unit="trace",
                                 disable=not progress)):
        if len(ids) + max_new_tokens > info.n_ctx:
            raise PromptError(f"Prompt {i} ({len(ids)} tokens) + {max_new_tokens} new tokens exceed the context.")
        with torch.inference_mode():
            out = twin.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        records.append({"ids": out[0].tolist(), "prompt_len": len(ids)})
    payload = {"model": info.spec.name, "prompts": prompts.fingerprint, "traces": records}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload))
    return _traces_from_json(payload, prompts, max_new_tokens, tok)


def _traces_from_json(payload: dict, prompts: PromptSet, max_new_tokens: int, tok) -> PromptSet:
    """The trace PromptSet: exact ids in `token_ids`, decoded text for display, prompt_len in metadata."""
    records = payload["traces"]
    meta = [{**base, "prompt_len": r["prompt_len"]} for r, base in zip(records, prompts.metadata, strict=True)]
    return PromptSet(name=f"{prompts.name}-traces{max_new_tokens}",
                     texts=tuple(tok.decode(r["ids"]) for r in records), metadata=tuple(meta),
                     token_ids=tuple(tuple(r["ids"]) for r in records), prepend_bos=False,
                     description=f"greedy traces ({max_new_tokens} new tokens max)")


def score_traces(model, traces: PromptSet) -> list[dict]:
    """Per trace: decoded continuation, extracted answer and whether it is right."""
    tok = model_info(model).tokenizer
    rows = []
    for ids, meta in zip(traces.token_ids, traces.metadata, strict=True):
        text = tok.decode(ids[meta["prompt_len"]:], skip_special_tokens=True)
        got = extract_answer(text)
        rows.append({"problem": meta.get("problem"), "answer": meta["answer"], "predicted": got,
                     "correct": got == meta["answer"], "n_tokens": len(ids) - meta["prompt_len"],
                     "text": text})
    return rows
