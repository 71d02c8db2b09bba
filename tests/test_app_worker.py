"""The model side of the app: engine.probe and analyses.preplan_anchor.traces (pattern and per-token views)
against full-pattern references, and the worker process driven through workbench_app.worker_client (errors come
back as messages; it keeps serving)."""

from __future__ import annotations

import time

import pytest
import torch

from workbench import api
from workbench.core.errors import InterventionError, PromptError
from workbench.core.prompts import PromptSet, tokenize
from workbench.engine import hooks
from workbench.models.loading import model_info

TEXT = "The cat sat on the mat. The dog sat on the log. " * 3


def full_patterns(model, ids):
    names = {hooks.pattern(layer) for layer in range(model_info(model).n_layers)}
    _, cache = model.run_with_cache(torch.tensor([ids]), names_filter=lambda n: n in names)
    return torch.stack([cache[hooks.pattern(layer)][0] for layer in range(len(names))])  # [L, H, T, T]


def test_head_pattern_matches_the_bridge_and_windows_long_prompts(tiny):
    ids = tokenize(tiny, PromptSet.from_texts("t", [TEXT]))[0]
    ref = full_patterns(tiny, ids)
    out = api.head_pattern(tiny, TEXT, 1, 2, max_tokens=512)
    got = torch.tensor(out["pattern"])
    assert out["head"] == "L1H2" and len(out["tokens"]) == len(ids) and not out["truncated"]
    torch.testing.assert_close(got, ref[1, 2], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.sum(-1), torch.ones(len(ids)), atol=1e-5, rtol=0)
    short = api.head_pattern(tiny, TEXT, 0, 1, max_tokens=20)
    assert short["truncated"] and len(short["tokens"]) == 20 and short["tokens"][0] == out["tokens"][0]
    assert short["window_start"] == len(ids) - 19 and short["n_tokens_total"] == len(ids)
    assert "".join(short["tokens"][1:]) == "".join(out["tokens"][-19:])


def test_head_pattern_rejects_bad_heads_and_text(tiny):
    with pytest.raises(InterventionError, match="do not exist"):
        api.head_pattern(tiny, TEXT, 2, 0)
    with pytest.raises(PromptError, match="empty"):
        api.head_pattern(tiny, "   ", 0, 0)
    with pytest.raises(PromptError, match="limit is 200,000"):
        api.head_pattern(tiny, "x" * 200_001, 0, 0)
    long = api.head_pattern(tiny, "x" * 600, 0, 0, max_tokens=1024)  # beyond tiny's 512 context: last window
    assert long["truncated"] and len(long["tokens"]) == 512 and long["n_tokens_total"] == 601
    with pytest.raises(PromptError, match="max_tokens"):
        api.head_pattern(tiny, TEXT, 0, 0, max_tokens=1)


def test_token_traces_match_full_patterns(tiny):
    ids = tokenize(tiny, PromptSet.from_texts("t", [TEXT]))[0]
    t = len(ids)
    ref = full_patterns(tiny, ids)  # [L, H, T, T]
    out = api.token_traces(tiny, TEXT, window=4, head="L1H2")
    seen = torch.arange(t, 0, -1, dtype=torch.float32)
    sink = (ref.sum(-2) / seen).mean((0, 1))
    torch.testing.assert_close(torch.tensor(out["sink"]), sink, atol=1e-4, rtol=1e-3)
    torch.testing.assert_close(torch.tensor(out["bos_mass"]), ref[..., 0].mean((0, 1)), atol=1e-4, rtol=1e-3)
    q = torch.arange(t)[:, None]
    dist = torch.clamp(q - torch.arange(t)[None, :], min=0, max=4).float()
    waad = (ref * dist).sum(-1)  # [L, H, T]
    torch.testing.assert_close(torch.tensor(out["head_traces"]["waad"]), waad[1, 2], atol=1e-4, rtol=1e-3)
    mean_dist = (ref * (q - torch.arange(t)[None, :]).clamp(min=0).float()).sum(-1)[..., 1:].mean(-1)
    is_global = mean_dist > mean_dist.median()
    torch.testing.assert_close(torch.tensor(out["waad"]), waad[~is_global].mean(0), atol=1e-4, rtol=1e-3)
    assert out["n_global_heads"] == int(is_global.sum())
    assert all(1 <= i < t for i in out["preplan"] + out["anchor"]) and out["anchor"]
    assert max(out["anchor"]) < t - 8


@pytest.fixture()
def worker():
    from workbench_app.worker_client import WorkerClient

    client = WorkerClient("tiny")
    client.start()
    yield client
    client.stop()


def wait(client, job, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.status(job)
        if status["status"] in ("done", "error"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish: {client.status(job)}")


def test_worker_loads_the_model_on_the_device_and_in_the_dtype_it_is_given():
    from workbench_app.worker_client import WorkerClient

    client = WorkerClient("tiny", worker_args=("--device", "cpu", "--dtype", "bfloat16"))
    try:
        client.start()
        wait(client, client.submit("head_pattern", {"text": "hello there", "head": "L1H0", "max_tokens": 16}))
        assert client.info["dtype"] == "bfloat16" and client.info["device"] == "cpu"
    finally:
        client.stop()


def test_worker_answers_errors_with_messages_and_keeps_serving(worker):
    bad = wait(worker, worker.submit("head_pattern", {"text": "hello", "head": "L7H0"}))
    assert bad["status"] == "error" and "do not exist" in bad["message"]
    unknown = wait(worker, worker.submit("explode", {}))
    assert unknown["status"] == "error" and "Unknown worker op" in unknown["message"]
    good = wait(worker, worker.submit("head_pattern", {"text": "hello there", "head": "L1H0", "max_tokens": 64}))
    assert good["status"] == "done" and good["result"]["head"] == "L1H0"
    assert worker.info["n_layers"] == 2 and worker.info["analyses"][0]["analysis"] == "attention_profile"
    table = wait(worker, worker.submit("intervene", {"heads": "L1H2", "edit": "scale", "alpha": 0.0,
                                                     "texts": ["The cat sat.", "A dog ran away."]}))
    assert table["status"] == "done" and len(table["result"]["rows"]) == 2
    assert table["result"]["edits"] == ["scale[α=0] L1H2"]
    assert worker.status("job-unknown")["status"] == "unknown"
