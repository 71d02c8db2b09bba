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


def finished(client, job, timeout=60.0):
    """The job's status once it has left the queue (done, error or cancelled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.status(job)
        if status["status"] not in ("queued", "running"):
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job} still {client.status(job)}")


# The app's largest attention_profile (50,000 tokens, near the budget) on the real model: ~13 TFLOP, tens of seconds
# on a CPU. On tiny the same run takes 0.7 s, less than a poll-and-cancel round on a loaded machine.
LONG = {"analysis": "attention_profile", "params": {"n_prompts": "100", "n_tokens": "500"}}


@pytest.fixture()
def real_worker():
    from workbench.models import DEFAULT_MODEL
    from workbench_app.worker_client import WorkerClient

    client = WorkerClient(DEFAULT_MODEL)
    client.start()
    yield client
    client.stop()


def test_a_queued_job_shows_its_place_and_is_dropped_and_a_running_one_stops(real_worker, isolated_dirs):
    worker = real_worker
    assert wait(worker, worker.submit("head_pattern", {"text": "warm up", "head": "L0H0"}))["status"] == "done"
    long = worker.submit("run_analysis", LONG)
    waiting = [worker.submit("head_pattern", {"text": "hello", "head": "L1H0"}) for _ in range(2)]
    while worker.status(long)["status"] == "queued":
        time.sleep(0.02)
    assert worker.status(waiting[0])["message"] == "1st in queue, behind run_analysis"
    assert worker.status(waiting[1])["message"] == "2nd in queue, behind head_pattern"
    assert [j["id"] for j in worker.jobs()][:3] == [long, *waiting]
    dropped = finished(worker, worker.cancel(waiting[0])["id"], timeout=2)
    assert dropped["status"] == "cancelled" and "before it started" in dropped["message"]
    assert worker.status(long)["status"] == "running" and worker.status(waiting[1])["message"].startswith("1st")
    deadline = time.monotonic() + 60
    while not (worker.status(long).get("progress") or {}).get("done") and time.monotonic() < deadline:
        time.sleep(0.02)  # until the first prompt is through: from here the run is inside the model's forwards
    progress = worker.status(long)["progress"]
    assert worker.status(long)["status"] == "running" and 0 < progress["done"] < progress["total"], progress
    started = time.monotonic()
    worker.cancel(long)
    stopped = finished(worker, long, timeout=3)
    assert stopped["status"] == "cancelled" and time.monotonic() - started < 3.0
    nxt = wait(worker, waiting[1], timeout=10)
    assert nxt["status"] == "done" and nxt["result"]["head"] == "L1H0"
    results = isolated_dirs / "results"  # the cancelled run left nothing: no run, no temp directory
    assert not results.exists() or not [p for p in results.rglob("*") if p.is_dir() and p.name != "attention_profile"]


def test_a_late_cancel_never_reaches_the_next_job(tiny):
    """Cancels of job A sent at random moments around its end: A is done or cancelled, B after it always done,
    the model keeps no hooks and gives the same pattern as before."""
    import random
    import threading

    from workbench import jobs as J
    from workbench import worker as W

    events, lock = [], threading.Lock()

    def emit(e):
        with lock:
            events.append(e)

    queue_ = J.JobQueue()
    w = W.Worker("tiny", emit, jobs=queue_)
    w._model = tiny
    reference = api.head_pattern(tiny, TEXT, 1, 2, max_tokens=64)["pattern"]  # (transformers adds its hooks once)
    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in w._modules())
    runner = threading.Thread(target=W.serve, args=(w, queue_), daemon=True)
    runner.start()

    def outcome(job_id, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                ends = [e for e in events if e["id"] == job_id and e["event"] in ("done", "error", "cancelled")]
            if ends:
                assert len(ends) == 1, ends
                return ends[0]
            time.sleep(0.001)
        raise AssertionError(f"{job_id} never answered")

    args = {"text": TEXT, "head": "L1H2", "max_tokens": 64}
    t0 = time.perf_counter()
    queue_.put({"id": "warm", "op": "head_pattern", "args": args})
    outcome("warm")
    one = time.perf_counter() - t0
    rng, kinds = random.Random(0), []
    for i in range(40):
        queue_.put({"id": f"a{i}", "op": "head_pattern", "args": args})
        queue_.put({"id": f"b{i}", "op": "head_pattern", "args": args})
        time.sleep(rng.uniform(0, 2 * one))
        queue_.cancel(f"a{i}")
        kinds.append(outcome(f"a{i}")["event"])
        after = outcome(f"b{i}")
        assert after["event"] == "done", (i, after)
        assert after["result"]["pattern"] == reference
    queue_.put(None)
    runner.join(timeout=10)
    assert set(kinds) <= {"done", "cancelled"} and kinds.count("cancelled") > 0, kinds
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in w._modules()) == hooks_before


def test_a_worker_that_ignores_a_cancel_is_restarted_and_its_other_jobs_move(tmp_path):
    from workbench_app.worker_client import WorkerClient

    log = tmp_path / "stdin.log"
    fake = tmp_path / "fake-python"  # stands in for `python -m workbench.worker`: reads, never answers
    fake.write_text(f"#!/bin/sh\nexec cat >> {log}\n")
    fake.chmod(0o755)
    client = WorkerClient("tiny", python=str(fake), cancel_grace_s=0.5)
    try:
        stuck, other = client.submit("intervene", {"heads": "L0H0"}), client.submit("load", {})
        assert client.status(other)["message"] == "2nd in queue, behind intervene"  # this worker never starts one
        assert client.cancel(stuck)["cancelling"]
        status = finished(client, stuck, timeout=5)
        assert status["status"] == "cancelled" and "restarting the model worker" in status["message"]
        assert client.status(other)["status"] == "queued"
        deadline = time.monotonic() + 5
        while log.read_text().count(f'"{other}"') < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = log.read_text().splitlines()
        assert [line for line in lines if f'"{other}"' in line][1:] and f'"op": "cancel", "id": "{stuck}"' in \
            "".join(lines)
    finally:
        client.kill()


def test_tqdm_lines_become_counts_rate_and_estimate():
    from workbench.jobs import parse_tqdm

    assert parse_tqdm("ablate:  10%|█         | 1/10 [00:10<01:30, 10.00s/condition]") == {
        "message": "ablate", "done": 1, "total": 10, "rate": 0.1, "unit": "condition", "eta_s": 90.0}
    assert parse_tqdm("stats · x:  30%|███   | 3/10 [00:02<1:00:05,  1.20prompt/s]\r")["eta_s"] == 3605.0
    first = parse_tqdm("a:   0%|          | 0/10 [00:00<?, ?it/s]")
    assert first["rate"] is None and first["eta_s"] is None and first["total"] == 10
    assert parse_tqdm("x: 50%|█ | 1/2")["done"] == 1 and parse_tqdm("no bar here") is None


def test_after_an_interrupt_only_per_call_hooks_are_removed():
    """Hooks left by an interrupted `finally`: workbench's own go, and the bridge's temporary ones (reset); hooks a
    library wires once on a first forward (transformers, the bridge's capture hooks) stay."""
    from workbench.jobs import HookGuard
    from workbench.models.tiny import byte_tokenizer as library_function  # any function outside workbench.jobs

    module, resets = torch.nn.Linear(2, 2), []
    kept = module.register_forward_hook(lambda *a: None)
    guard = HookGuard([module], reset=lambda: resets.append(1))
    module.register_forward_hook(lambda *a: None)  # defined here (tests.*): not workbench's, stays
    ours = module.register_forward_pre_hook(library_function)  # stands in for a workbench hook
    assert guard.remove_new() == 1 and resets == [1]
    assert ours.id not in module._forward_pre_hooks and kept.id in module._forward_hooks
    assert len(module._forward_hooks) == 2


OVER_LIMIT = {  # every worker op, with a request over one of its limits and the limit its message states
    "head_pattern": ({"text": "hello", "head": "L0H0", "max_tokens": 5000}, "between 1 and 1,024"),
    "attention_window": ({"text": "hello", "layer": 0, "size": 5000}, "in 1..1024"),
    "token_traces": ({"text": "y" * 20_001}, "limit is 20,000"),
    "intervene": ({"heads": "L0H0", "edit": "scale", "n_prompts": 17}, "between 1 and 16"),
    "run_analysis": ({"analysis": "attention_profile", "params": {"n_prompts": "200", "n_tokens": "500"}},
                     "at most 65,536"),
    "head_probe": ({"head": "L0H0" * 6}, "limit is 20"),
    "ablate_everywhere": ({"head": "L0H0", "mode": "m" * 11}, "limit is 10"),
    "load": None,  # no parameters
}


def test_every_worker_op_checks_its_budget_before_work_starts(tiny):
    """A new op must add its over-limit case here."""
    from workbench import worker as W

    ops = {name.removeprefix("op_") for name in dir(W.Worker) if name.startswith("op_")}
    assert ops == set(OVER_LIMIT), f"worker ops without a budget case: {sorted(ops - set(OVER_LIMIT))}"
    events = []
    w = W.Worker("tiny", events.append)
    w._model = tiny
    for op, case in OVER_LIMIT.items():
        if case is None:
            continue
        args, limit = case
        started = time.perf_counter()
        w.handle({"id": op, "op": op, "args": args})
        assert events[-1]["event"] == "error" and limit in events[-1]["message"], (op, events[-1])
        assert time.perf_counter() - started < 2.0, op  # refused before any model work
