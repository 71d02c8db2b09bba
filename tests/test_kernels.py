"""The fused native softmax-statistics kernel against float64 torch, and how it is built, cached and refused."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.engine import kernels
from workbench.engine.kernels import softmax_stats
from workbench.engine.kernels.softmax_stats import KeySets, RowStats

# float32 softmax: each P within a few ulp of 1 (≤ 1e-6 absolute); sums of ≤ 300 such terms (column sums, masses)
# and distances (up to 300 × P) stay inside these bounds with a wide margin.
ATOL_P, ATOL_SUM, RTOL_DIST = 2e-6, 2e-5, 2e-5


@pytest.fixture(autouse=True)
def kernel():
    if not softmax_stats.available():
        pytest.skip(f"the native kernel is unavailable here: {kernels.why_unavailable('softmax_stats')}")


def _reference(scores, q0, causal, window, dist_window, sets, weights):
    b, h, c, k = scores.shape
    q = torch.arange(q0, q0 + c)[:, None]
    keys = torch.arange(k)[None, :]
    hidden = torch.zeros(c, k, dtype=torch.bool)
    if causal:
        hidden |= keys > q
    if window:
        hidden |= keys <= q - window
    p = scores.double().masked_fill(hidden, float("-inf")).softmax(-1).nan_to_num(0.0)
    d = (q - keys).double()
    if dist_window is not None:
        d = d.clamp(max=dist_window)
    w = torch.ones(b, c, dtype=torch.float64) if weights is None else weights.double()
    first_max = torch.where(p.sum(-1) > 0, p.argmax(-1), 0)
    return {"p": p, "row_max": p.max(-1).values, "argmax": first_max, "distance": (p * d).sum(-1),
            "col_sum": (p * w[:, None, :, None]).sum(2),
            "mass": torch.stack([p[..., sorted({i for i in s.tolist() if i < k})].sum(-1) for s in sets], 0)}


def _run(scores, q0, *, causal=True, window=None, dist_window=None, sets=(), weights=None, normalized=True,
         rows_before=0):
    b, h, c, k = scores.shape
    flat = KeySets.of(list(sets))
    col_sum = torch.zeros(b, h, k + 3)  # wider than the block, as a layer's running sums are
    into = RowStats.empty(b, h, rows_before + c + 1, flat.count)
    block = scores.clone()
    softmax_stats.softmax_stats_(block, q0, causal=causal, window=window, distance_window=dist_window,
                                 key_sets=flat, weights=weights, col_sum=col_sum, into=into, row0=rows_before,
                                 normalized=normalized)
    return block, into.rows(rows_before, rows_before + c), col_sum


CASES = {
    "causal": dict(q0=40, causal=True),
    "causal clipped distance": dict(q0=40, causal=True, dist_window=7),
    "sliding window": dict(q0=40, causal=True, window=9, dist_window=3),
    "no mask": dict(q0=0, causal=False),
    "first rows": dict(q0=0, causal=True),
}


@pytest.mark.parametrize("normalized", [True, False], ids=["P", "deferred"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("threads", [1, 2])
def test_block_statistics_equal_float64(case, normalized, threads, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    gen = torch.Generator().manual_seed(7)
    b, h, c, k = 1, 3, 5, 45  # 15 rows over 2 threads: a head is split between them (private column sums)
    scores = torch.randn(b, h, c, k, generator=gen) * 3
    opts = CASES[case]
    sets = (torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 44, 10_000]), torch.tensor([], dtype=torch.long))
    weights = torch.tensor([[1.0, 0.0, 1.0, 1.0, 1.0]])
    block, stats, col_sum = _run(scores, sets=sets, weights=weights, normalized=normalized, rows_before=2, **opts)
    want = _reference(scores, opts["q0"], opts["causal"], opts.get("window"), opts.get("dist_window"), sets, weights)
    got_p = block.double() * (1.0 if normalized else stats.row_max.double()[..., None])
    torch.testing.assert_close(got_p, want["p"], atol=ATOL_P, rtol=0)
    torch.testing.assert_close(stats.row_max.double(), want["row_max"], atol=ATOL_P, rtol=0)
    assert torch.equal(stats.row_argmax, want["argmax"])
    torch.testing.assert_close(stats.distance.double(), want["distance"], atol=ATOL_SUM, rtol=RTOL_DIST)
    torch.testing.assert_close(col_sum[..., :k].double(), want["col_sum"], atol=ATOL_SUM, rtol=0)
    assert not col_sum[..., k:].any()
    torch.testing.assert_close(stats.key_mass.double(), want["mass"], atol=ATOL_SUM, rtol=0)


def test_padding_rows_ties_and_many_key_sets():
    """A row of −inf logits carries no attention; equal logits pick the first visible key; > 64 key sets."""
    scores = torch.zeros(2, 1, 3, 20)
    scores[1, :, 1] = float("-inf")
    sets = [torch.tensor([i]) for i in range(70)]
    block, stats, col_sum = _run(scores, 10, causal=True, window=4, sets=sets)
    assert not block[1, 0, 1].any() and stats.row_max[1, 0, 1] == 0 and stats.distance[1, 0, 1] == 0
    assert stats.row_argmax[0, 0].tolist() == [7, 8, 9]  # window 4: keys q-3..q, all equal
    torch.testing.assert_close(stats.row_max[0, 0], torch.full((3,), 0.25), atol=ATOL_P, rtol=0)
    torch.testing.assert_close(stats.key_mass[11, 0, 0], torch.tensor([0.0, 0.25, 0.25]), atol=ATOL_P, rtol=0)
    assert not stats.key_mass[20:].any()


def test_bad_shapes_are_refused():
    scores = torch.randn(1, 2, 3, 8)
    flat = KeySets.of([])
    with pytest.raises(ValueError, match="do not fit"):
        softmax_stats.softmax_stats_(scores, 5, causal=True, window=None, distance_window=None, key_sets=flat,
                                     weights=None, col_sum=None, into=RowStats.empty(1, 2, 2, 0), row0=0)
    with pytest.raises(ValueError, match="col_sum"):
        softmax_stats.softmax_stats_(scores, 5, causal=True, window=None, distance_window=None, key_sets=flat,
                                     weights=None, col_sum=torch.zeros(1, 2, 4), into=RowStats.empty(1, 2, 3, 0),
                                     row0=0)
    with pytest.raises(ValueError, match="float32"):
        softmax_stats.softmax_stats_(scores.double(), 5, causal=True, window=None, distance_window=None,
                                     key_sets=flat, weights=None, col_sum=None, into=RowStats.empty(1, 2, 3, 0),
                                     row0=0)


def test_switched_off_and_failed_builds_fall_back_with_the_reason(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(kernels.ENV_SWITCH, "off")
    assert kernels.load("softmax_stats") is None
    monkeypatch.delenv(kernels.ENV_SWITCH)
    monkeypatch.setenv("WORKBENCH_MODEL_CACHE", str(tmp_path / "models"))
    monkeypatch.setenv("CC", "false")  # a compiler that fails every build
    monkeypatch.setattr(kernels, "_LOADED", {})
    monkeypatch.setattr(kernels, "_WHY", {})
    with caplog.at_level(logging.WARNING, logger="workbench.engine.kernels"):
        assert kernels.load("softmax_stats") is None
    assert "the build failed" in kernels.why_unavailable("softmax_stats")
    assert "torch path is used instead" in caplog.text
    assert not list((tmp_path / "models" / "_kernels").glob("*")), "a failed build leaves no file behind"


def test_two_processes_building_at_once_share_one_file(tmp_path):
    env = {**os.environ, "WORKBENCH_MODEL_CACHE": str(tmp_path / "models")}
    code = ("from workbench.engine.kernels import softmax_stats; import sys; "
            "sys.exit(0 if softmax_stats.available() else 1)")
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=root) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    built = sorted(p.name for p in (tmp_path / "models" / "_kernels").iterdir())
    assert len(built) == 1 and built[0].startswith("softmax_stats-") and built[0].endswith(".so")


def test_the_command_line_prints_the_fallback_warning_on_its_own_line(tmp_path):
    """The warning comes mid-bar (at the first layer's statistics): the bar is cleared first, then redrawn."""
    env = {**os.environ, "WORKBENCH_MODEL_CACHE": str(tmp_path / "models"), "CC": "false"}
    env.pop(kernels.ENV_SWITCH, None)
    proc = subprocess.run([sys.executable, "-m", "workbench.cli", "--home", str(tmp_path / "home"), "run",
                           "attention_profile", "-m", "tiny", "--device", "cpu"], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    segments = [s.strip() for s in proc.stderr.replace("\r", "\n").split("\n")]
    warning = [s for s in segments if "native kernel 'softmax_stats' is unavailable" in s]
    assert len(warning) == 1 and warning[0].startswith("The native kernel"), segments
    assert any(s.startswith("streaming stats") and "4/4" in s for s in segments)
