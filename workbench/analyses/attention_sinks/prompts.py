"""Shipped letter-answer prompt sets (A–D) in the SmolLM2 chat template, with a fixed split (data/sinks/README.md).

`first_letter` (default; SmolLM2-135M ~60 %) and `simple_mc` (SmolLM2-135M at chance, unusable for ACT).
The choice is the letter token (" A" … " D") with the highest last-position logit; chance 25 %. Every
`holdout_every`-th item (by id) is held out, the rest calibrate.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.core.errors import PromptError
from workbench.core.paths import shipped
from workbench.core.prompts import PromptSet

DATA_DIR = shipped("data", "sinks")
DATASETS = {"first_letter": DATA_DIR / "first_letter.json", "simple_mc": DATA_DIR / "simple_mc.json"}
DATA = DATASETS["first_letter"]
LETTERS = ("A", "B", "C", "D")


def load_items(path: Path | str = DATA) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise PromptError(f"Multiple-choice file {path} not found; it ships in data/sinks/.")
    items = json.loads(path.read_text())["items"]
    bad = [it.get("id") for it in items if it.get("answer") not in LETTERS or set(it["options"]) != set(LETTERS)]
    if bad:
        raise PromptError(f"{path}: items {bad[:5]} need options A–D and an answer letter A–D.")
    return items


def format_prompt(item: dict) -> str:
    options = "\n".join(k if item["options"][k] == k else f"{k}. {item['options'][k]}" for k in LETTERS)
    return (f"<|im_start|>user\n{item['question']}\n{options}\nAnswer with the letter.<|im_end|>\n"
            "<|im_start|>assistant\nAnswer:")


def mc_prompts(split: str = "all", *, holdout_every: int = 3, dataset: str = "first_letter",
               path: Path | str | None = None) -> PromptSet:
    """Prompts of `split` ("calibration", "heldout" or "all") of a shipped set; metadata: the answer letter."""
    if split not in ("all", "calibration", "heldout"):
        raise PromptError(f"Unknown split {split!r}; choose all, calibration or heldout.")
    if path is None and dataset not in DATASETS:
        raise PromptError(f"Unknown letter-answer set {dataset!r}; choose one of {', '.join(DATASETS)}.")
    items = load_items(path or DATASETS[dataset])
    if split != "all":
        held = [it for it in items if it["id"] % holdout_every == holdout_every - 1]
        items = held if split == "heldout" else [it for it in items if it not in held]
    # The template starts with <|im_start|> (SmolLM2's BOS), so no BOS is added on top.
    return PromptSet(name=f"{dataset}-{split}", texts=tuple(format_prompt(it) for it in items),
                     metadata=tuple({"id": it["id"], "answer_letter": it["answer"]} for it in items),
                     prepend_bos=False, description=f"{dataset}: letter-answer questions written for this project")
