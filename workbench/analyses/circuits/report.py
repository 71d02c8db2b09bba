"""Two saved circuits side by side (formulas in `overlap.py`): shared heads, Jaccard, overlap coefficient, chance
level and Spearman ρ of the full |score| maps. Shared by `workbench circuits overlap` and the Circuits page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbench.analyses.circuits.overlap import chance_p_value, overlap, random_overlap_baseline
from workbench.results.circuit_maps import load_with_scores
from workbench.results.circuits import Circuit


@dataclass
class CircuitComparison:
    a: Circuit
    b: Circuit
    a_scores: pd.DataFrame | None
    b_scores: pd.DataFrame | None
    sets: dict
    maps: dict = field(default_factory=dict)
    chance: dict | None = None
    p_value: float | None = None

    @property
    def same_shape(self) -> bool:
        """Both circuits are of one layer × head shape (one model), so they share a membership map."""
        return (self.a.n_layers, self.a.n_heads) == (self.b.n_layers, self.b.n_heads)

    def overlap_figure(self, names: tuple[str, str] | None = None):
        """The membership map (A only, B only, both), or None for circuits of two shapes."""
        from workbench.analyses.circuits.views import circuit_overlap_map

        if not self.same_shape:
            return None
        return circuit_overlap_map(self.a.n_layers, self.a.n_heads, self.a.heads, self.b.heads,
                                   names=names or (self.a.name, self.b.name))

    def rows(self) -> pd.DataFrame:
        """The measures as a two-column table (measure, value)."""
        a, b, s = self.a.name, self.b.name, self.sets
        rows = [("shared heads", f"{s['n_shared']}: {', '.join(s['shared']) or '-'}"),
                (f"share of {a}'s heads also in {b}", f"{s['shared_of_a']:.1%}"),
                (f"share of {b}'s heads also in {a}", f"{s['shared_of_b']:.1%}"),
                ("Jaccard |A∩B|/|A∪B|", f"{s['jaccard']:.3f}"),
                ("overlap coefficient |A∩B|/min(|A|,|B|)", f"{s['overlap_coefficient']:.3f}")]
        if self.chance:
            c = self.chance
            rows.append(("chance (random circuits of these sizes): Jaccard / overlap coefficient",
                         f"{c['mean_jaccard']:.3f} ± {c['sd_jaccard']:.3f} / {c['mean_overlap_coefficient']:.3f}"))
            rows.append((f"P(≥ {s['n_shared']} shared heads by chance)", f"{self.p_value:.2g}"))
        if self.maps.get("spearman") is not None:
            rows.append(("Spearman of the full |score| maps",
                         f"{self.maps['spearman']:.3f} (p = {self.maps['spearman_p']:.2g})"))
        for note in (self.maps.get("notes", []) if self.maps else s.get("notes", [])):
            rows.append(("note", note))
        return pd.DataFrame(rows, columns=["measure", "value"])


def compare_circuits(a: str | Path, b: str | Path, directory: Path | str | None = None) -> CircuitComparison:
    """Load two circuits (names in `directory`, default circuits/, or file paths) and measure their overlap."""
    directory = Path(directory) if directory is not None else None
    (ca, ma), (cb, mb) = load_with_scores(a, directory), load_with_scores(b, directory)
    result = CircuitComparison(ca, cb, ma, mb, sets=overlap(ca, cb))
    if ma is not None and mb is not None:
        result.maps = overlap(ma, mb, top_k=1)
    if result.same_shape:
        result.chance = random_overlap_baseline(ca.n_layers, ca.n_heads, len(ca.heads), len(cb.heads))
        result.p_value = chance_p_value(ca.n_layers, ca.n_heads, len(ca.heads), len(cb.heads),
                                        result.sets["n_shared"])
    return result
