"""Every edit gives the same logits through the bridge's hooks and inside the streaming twin, and changes them.

The tiny model runs in float64 (RMSNorm kept in float64, as in test_patching). The bridge still rounds its
attention to float32 (softmax and rotary in float32), so the two back ends agree to float32 rounding of the
attention weights (ε = 1.2e-7) carried through two layers: 1e-6 of the largest logit. An edit must move
some logit by more than 1e-3, far above that, so each comparison could fail.
"""

from __future__ import annotations

import pytest
import torch
from float64 import default_float64, tiny_in_float64

from workbench.core.heads import parse_heads
from workbench.core.prompts import PromptSet, tokenize
from workbench.edits import apply
from workbench.edits.kinds import (
    AblateHead,
    AttentionEdit,
    Batch,
    FinalQueryBias,
    MassiveDimEdit,
    PatchHead,
    ScaleHead,
    SinkCalibration,
    StreamingWindow,
    UniformAttention,
)
from workbench.models.loading import model_info

TEXTS = ("The cat sat on the mat and looked around.", "Heads attend.", "A short one, then a longer one.")
HEADS = parse_heads("L0H1,L1H2,L1H3")
RTOL = 1e-6
RTOL64 = 1e-10  # one float64 computation against another: sums of <= 450 terms, eps 2.2e-16, through two layers
NAMES = ("ablate-zero", "ablate-mean", "ablate-mean-per-position", "scale", "patch", "uniform", "reweight-scale",
         "reweight-remove", "final-query-bias", "sink-calibration", "streaming-window", "massive-zero", "massive-mean")


@pytest.fixture(scope="module")
def tiny64():
    return tiny_in_float64()


def prompts() -> PromptSet:
    return PromptSet.from_texts("equivalence", TEXTS)


def every_edit(model) -> tuple[dict[str, object], PromptSet]:
    ps = prompts()
    bos = model_info(model).tokenizer.bos_token_id
    return {
        "ablate-zero": AblateHead(HEADS),
        "ablate-mean": AblateHead(HEADS, "mean"),
        "ablate-mean-per-position": AblateHead(HEADS, "mean", per_position=True, reference=PromptSet.from_texts(
            "ref", (TEXTS[0][::-1], TEXTS[0].upper()))),  # as long as the longest prompt
        "scale": ScaleHead(HEADS, 2.5),
        "patch": PatchHead(HEADS, PromptSet.from_texts("reversed", [t[::-1] for t in TEXTS])),
        "uniform": UniformAttention(HEADS),
        "reweight-scale": AttentionEdit(HEADS, (0, -2), scale=4.0),
        "reweight-remove": AttentionEdit(HEADS, (0,), scale=0.0),
        "final-query-bias": FinalQueryBias(HEADS, ((3, 5), (1,), (2, 4, 6)), 3.0),
        "sink-calibration": SinkCalibration(((0, 1), (1, 2)), ({(0, 1): [0, 2], (1, 2): [1]}, {(1, 2): [0]}, {}),
                                            0.4),
        "streaming-window": StreamingWindow(HEADS, sink=2, recent=4),
        "massive-zero": MassiveDimEdit(0, (1, 5, 9), "zero"),
        "massive-mean": MassiveDimEdit(0, (5, 9), "mean", 0.0, (1.0, -2.0), ((bos, (3.0, 4.0)),)),
    }, ps


def logits(model, ps, edits, backend):
    edits = apply.resolve(edits, ps)
    ids = tokenize(model, ps)
    with default_float64():
        batch = Batch(tuple(range(len(ids))), tuple(map(tuple, ids)), apply.prepare(model, ps, edits))
        out = apply.forward(model, ids, edits, batch, backend=backend)
    return torch.cat([out[j, :len(x)] for j, x in enumerate(ids)])  # real positions only


@pytest.mark.parametrize("name", NAMES)
def test_bridge_and_twin_agree_and_the_edit_matters(tiny64, name):
    edits, ps = every_edit(tiny64)
    bridge, twin = logits(tiny64, ps, [edits[name]], "bridge"), logits(tiny64, ps, [edits[name]], "twin")
    assert bridge.dtype == twin.dtype == torch.float64
    assert (bridge - twin).abs().max() <= RTOL * bridge.abs().max()
    clean = logits(tiny64, ps, [], "bridge")
    assert (bridge - clean).abs().max() > 1e-3, f"{name} does not change the logits"


def test_clean_back_ends_agree(tiny64):
    ps = prompts()
    bridge, twin = logits(tiny64, ps, [], "bridge"), logits(tiny64, ps, [], "twin")
    assert (bridge - twin).abs().max() <= RTOL * bridge.abs().max()


@pytest.mark.parametrize("name", ["ablate-zero", "scale", "uniform", "reweight-scale", "streaming-window",
                                  "massive-zero"])
def test_decoding_with_a_kv_cache_equals_the_full_bridge_forward(tiny64, name):
    """Position-free edits inside `editing`: prefill 4 tokens, then one token per step with a KV cache."""
    from transformers import DynamicCache

    from workbench.engine.run import stream_forward

    edit = every_edit(tiny64)[0][name]
    if isinstance(edit, AttentionEdit):
        edit = AttentionEdit(edit.heads, (0,), scale=4.0)  # keys counted from the start: known while decoding
    ids = torch.tensor([tokenize(tiny64, prompts())[0]])
    with default_float64():
        ref = apply.forward(tiny64, ids.tolist(), [edit], backend="bridge")[0]
    with apply.editing([edit], tiny64):
        cache = DynamicCache(config=model_info(tiny64).hf_config)
        stream_forward(tiny64, ids[:, :4], None, cache=cache)
        steps = [stream_forward(tiny64, ids[:, t:t + 1], None, cache=cache, logits="last").logits[0, -1]
                 for t in range(4, ids.shape[1])]
    assert (torch.stack(steps) - ref[4:]).abs().max() <= RTOL * ref.abs().max()


class _GenericWindow(StreamingWindow):
    """A streaming window without its key-range hint: the twin's generic score-edit path (every key's logit)."""

    visible_keys = None


def test_streaming_window_fast_path_equals_the_generic_path(tiny64, monkeypatch):
    """Blocks of 64 query rows over prompts of 450 and 300 tokens (right padding), a window of 4 sink + 100 recent
    keys that spans block edges: computing only the hinted keys gives the generic path's logits in float64."""
    from workbench.engine import streaming

    monkeypatch.setattr(streaming, "ROWS_PER_BLOCK", 64)
    spied, block_keys = [], streaming._block_keys

    def spy(*args):
        keys = block_keys(*args)
        spied.append(None if keys is None else len(keys))
        return keys

    monkeypatch.setattr(streaming, "_block_keys", spy)
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (450, 300)]
    heads = parse_heads("L0H0,L0H1,L1H2")
    with default_float64():
        fast = apply.forward(tiny64, ids, [StreamingWindow(heads, sink=4, recent=100)], backend="twin")
        assert spied and all(n is not None and n <= 4 + 100 + 64 for n in spied)  # the fast path ran
        spied.clear()
        generic = apply.forward(tiny64, ids, [_GenericWindow(heads, sink=4, recent=100)], backend="twin")
        assert spied and all(n is None for n in spied)
        clean = apply.forward(tiny64, ids, [], backend="twin")
    assert fast.dtype == torch.float64
    real = torch.cat([x[:len(seq)] for x, seq in zip(fast - generic, ids, strict=True)])
    assert real.abs().max() <= RTOL64 * generic.abs().max()
    assert (generic[0, :450] - clean[0, :450]).abs().max() > 1e-3, "the window does not change the logits"
