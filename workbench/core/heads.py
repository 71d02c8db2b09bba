"""HeadRef: one attention head, written L{layer}H{head} everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from workbench.core.scores import head_label, parse_head_label


@dataclass(frozen=True, order=True)
class HeadRef:
    layer: int
    head: int

    def __str__(self) -> str:
        return head_label(self.layer, self.head)

    @classmethod
    def parse(cls, label: "str | HeadRef | tuple[int, int]") -> "HeadRef":
        if isinstance(label, HeadRef):
            return label
        if isinstance(label, tuple) and len(label) == 2:
            return cls(int(label[0]), int(label[1]))
        return cls(*parse_head_label(label.strip() if isinstance(label, str) else label))


def parse_heads(labels: "str | Iterable") -> tuple[HeadRef, ...]:
    """Parse 'L3H5, L10H2' or an iterable of labels/HeadRefs into sorted, unique HeadRefs."""
    if isinstance(labels, str):
        labels = [x for x in labels.replace(";", ",").replace(" ", ",").split(",") if x]
    return tuple(sorted({HeadRef.parse(x) for x in labels}))


def check_heads(heads: Iterable[HeadRef], n_layers: int, n_heads: int) -> None:
    from workbench.core.errors import InterventionError

    bad = [str(h) for h in heads if not (0 <= h.layer < n_layers and 0 <= h.head < n_heads)]
    if bad:
        raise InterventionError(f"Heads {', '.join(bad)} do not exist: the model has layers 0..{n_layers - 1} "
                                f"and heads 0..{n_heads - 1} per layer.")
