"""A shipped multiple-choice prompt set (letters A–D) in the SmolLM2 chat template, with a fixed split.

`data/sinks/simple_mc.json` holds simple factual / commonsense questions written for this project, each
with four options and the letter of the right one. A prompt is

    <|im_start|>user\\n<question>\\nA. …\\nB. …\\nC. …\\nD. …\\nAnswer with the letter.<|im_end|>\\n
    <|im_start|>assistant\\nAnswer:

and the model's choice is the letter whose token (" A" … " D", single tokens) has the highest logit at
the last position. Chance is 25 %. The split is deterministic: every `holdout_every`-th item (by id)
is held out, the rest calibrate.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.engine.prompts import PromptSet
from workbench.errors import PromptError

DATA = Path(__file__).resolve().parents[2] / "data" / "sinks" / "simple_mc.json"
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
    options = "\n".join(f"{k}. {item['options'][k]}" for k in LETTERS)
    return (f"<|im_start|>user\n{item['question']}\n{options}\nAnswer with the letter.<|im_end|>\n"
            "<|im_start|>assistant\nAnswer:")


def mc_prompts(split: str = "all", *, holdout_every: int = 3, path: Path | str = DATA) -> PromptSet:
    """Prompts of `split` ("calibration", "heldout" or "all"); metadata: answer letter and options."""
    if split not in ("all", "calibration", "heldout"):
        raise PromptError(f"Unknown split {split!r}; choose all, calibration or heldout.")
    items = load_items(path)
    if split != "all":
        held = [it for it in items if it["id"] % holdout_every == holdout_every - 1]
        items = held if split == "heldout" else [it for it in items if it not in held]
    # The template starts with <|im_start|> (SmolLM2's BOS), so no BOS is added on top.
    return PromptSet(name=f"simple-mc-{split}", texts=tuple(format_prompt(it) for it in items),
                     metadata=tuple({"id": it["id"], "answer_letter": it["answer"]} for it in items),
                     prepend_bos=False, description="simple 4-option questions written for this project")
