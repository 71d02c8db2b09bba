"""Faults of the app's model worker and request bounds: no deadlock on large payloads, bounded queues that
answer busy, job records kept while pending, a dead worker failing its jobs and restarting, the work budget,
paths refused, and malformed inputs answered with one clear line."""

from __future__ import annotations

import io
import json
import queue
import threading
import time

import pytest

from workbench import worker
from workbench.core import budget
from workbench.core.natural_text import public_domain_text
from workbench_app import controllers as C
from workbench_app import requests as R
from workbench_app.worker_client import MAX_FINISHED, WorkerBusy, WorkerClient

TIMEOUT = 120.0


def wait(client, job, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.status(job)
        if status["status"] in ("done", "error"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish in {timeout} s: {client.status(job)['message']}")


def fake_python(tmp_path, body: str) -> str:
    """An executable standing in for `python -m workbench.worker` (ignores its arguments)."""
    path = tmp_path / "fake-python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture()
def client():
    c = WorkerClient("tiny")
    c.start()
    yield c
    c.stop()


def test_large_payloads_and_a_large_result_do_not_deadlock(client):
    """The reported sequence on the tiny model: a running analysis, a 512-token pattern (a ~3 MB answer) and
    five ~20,000-character prompts submitted at once (100 KB, more than a pipe holds) all finish."""
    text = public_domain_text()
    prompts = [text[i * 20_000:i * 20_000 + 19_999] for i in range(1, 6)]
    started = time.monotonic()
    jobs = [client.submit("run_analysis", {"analysis": "attention_profile",
                                           "params": {"n_prompts": "8", "n_tokens": "500"}}),
            client.submit("head_pattern", {"text": prompts[0], "head": "L1H0", "max_tokens": 512})]
    lock, submit_seconds = threading.Lock(), []

    def submit(body):
        t0 = time.monotonic()
        job = client.submit("token_traces", {"text": body, "window": 10})
        with lock:
            jobs.append(job)
            submit_seconds.append(time.monotonic() - t0)

    threads = [threading.Thread(target=submit, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(jobs) == 7 and max(submit_seconds) < 2.0, "submit blocked"
    results = [wait(client, job) for job in jobs]
    assert [r["status"] for r in results] == ["done"] * 7, [r["message"] for r in results]
    assert len(results[1]["result"]["pattern"]) == 512
    assert all(r["result"]["truncated"] for r in results[2:])
    assert client.status(jobs[0])["status"] == "done" and time.monotonic() - started < TIMEOUT
    later = wait(client, client.submit("head_pattern", {"text": "hello", "head": "L0H0"}), timeout=30)
    assert later["status"] == "done"


def test_seventy_pending_jobs_keep_their_records_and_a_full_queue_answers_busy(tmp_path):
    c = WorkerClient("tiny", python=fake_python(tmp_path, "exec cat > /dev/null"), max_pending=70)
    try:
        jobs = [c.submit("head_pattern", {"text": "x" * 2000, "head": "L0H0"}) for _ in range(70)]
        assert [c.status(j)["status"] for j in jobs] == ["queued"] * 70
        with pytest.raises(WorkerBusy, match="busy: 70 requests are waiting"):
            c.submit("head_pattern", {"text": "x", "head": "L0H0"})
        for j in jobs[:60]:  # finished jobs are dropped oldest first, pending ones never
            c._apply({"id": j, "event": "done", "result": {}})
        assert c.pending() == 10 and all(c.status(j)["status"] == "queued" for j in jobs[60:])
        more = [c.submit("load", {}) for _ in range(10)]
        for j in more:
            c._apply({"id": j, "event": "error", "message": "x"})
        assert c.status(jobs[0])["status"] == "done"  # 70 finished ≤ MAX_FINISHED: all kept
        assert MAX_FINISHED >= 64
    finally:
        c.kill()


def test_the_worker_answers_busy_when_its_queue_is_full():
    lines = "".join(json.dumps({"id": f"j{i}", "op": "load", "args": {}}) + "\n" for i in range(4))
    events, jobs = [], queue.Queue(maxsize=2)
    stream = io.StringIO(lines + "not json\n" + json.dumps({"op": "quit"}) + "\n" + lines)
    reader = threading.Thread(target=worker.read_requests, args=(stream, jobs, events.append), daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while len(events) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    busy = [e for e in events if e.get("busy")]
    assert [e["id"] for e in busy] == ["j2", "j3"] and all(e["message"] == worker.BUSY for e in busy)
    assert "Wait for them to finish" in worker.BUSY
    assert any("bad request line" in e["message"] for e in events)
    assert [jobs.get(timeout=5)["id"] for _ in range(2)] == ["j0", "j1"] and jobs.get(timeout=5) is None
    reader.join(timeout=5)
    assert not reader.is_alive() and len(events) == 3  # nothing after 'quit' was read


def test_a_dead_worker_fails_its_jobs_and_the_next_request_restarts_it(tmp_path):
    c = WorkerClient("tiny", python=fake_python(tmp_path, "read line; exit 3"))
    first = c.submit("load", {})
    status = wait(c, first, timeout=20)
    assert status["status"] == "error" and "stopped (exit code 3" in status["message"]
    assert "run the request again" in status["message"]
    second = wait(c, c.submit("load", {}), timeout=20)  # a fresh process, which also exits
    assert second["status"] == "error" and "exit code 3" in second["message"]


def test_a_killed_real_worker_fails_the_running_job_and_restarts(client):
    assert wait(client, client.submit("head_pattern", {"text": "warm up", "head": "L0H0"}))["status"] == "done"
    job = client.submit("run_analysis", {"analysis": "attention_profile",
                                         "params": {"n_prompts": "16", "n_tokens": "500"}})
    while client.status(job)["status"] == "queued":
        time.sleep(0.02)
    client.kill()
    failed = wait(client, job, timeout=20)
    assert failed["status"] == "error" and "model worker stopped" in failed["message"]
    again = wait(client, client.submit("head_pattern", {"text": "hello again", "head": "L1H1"}))
    assert again["status"] == "done" and again["result"]["head"] == "L1H1"


def run_op(tiny_worker, op, **args):
    events = []
    tiny_worker.emit = events.append
    tiny_worker.handle({"id": "j", "op": op, "args": args})
    return events[-1]


@pytest.fixture(scope="module")
def tiny_worker():
    return worker.Worker("tiny", emit=lambda e: None)


def test_over_budget_requests_are_refused_by_the_worker_and_the_app(tiny_worker, monkeypatch):
    out = run_op(tiny_worker, "run_analysis", analysis="attention_profile",
                 params={"n_prompts": "56", "n_tokens": "8191"})
    assert out["event"] == "error" and "458,696 prompt tokens" in out["message"] and "65,536" in out["message"]
    with pytest.raises(budget.BudgetError, match="2,101 tokens.*at most 2,048 per prompt"):
        budget.check_edit_lengths([5, 2_101])
    monkeypatch.setattr(budget, "MAX_EDIT_TOKENS", 100)  # the tiny model's context (512) is below 2,048
    out = run_op(tiny_worker, "intervene", heads="L0H0,L0H1,L0H2,L0H3,L1H0", edit="uniform",
                 texts=["short", "x" * 150])
    assert out["event"] == "error" and "151 tokens" in out["message"] and "at most 100" in out["message"]
    out = run_op(tiny_worker, "head_pattern", text="y" * 20_001, head="L0H0")
    assert out["event"] == "error" and "limit is 20,000" in out["message"]
    analyses = [{"analysis": "attention_profile", "params": {"n_prompts": 4, "n_tokens": 256}}]
    with pytest.raises(C.AppInputError, match=r"458,696 .* at most 65,536"):
        R.analysis_request("attention_profile", "n_prompts=56,n_tokens=8191", analyses, [])
    assert R.analysis_request("attention_profile", "n_prompts=60, n_tokens=509", analyses, [])["params"] == \
        {"n_prompts": "60", "n_tokens": "509"}
    with pytest.raises(C.AppInputError, match="finite"):
        R.analysis_request("attention_profile", "n_prompts=nan", analyses, [])
    budget.refuse_paths({"top_fraction": ".05", "layers": "20-29", "receivers": "L23H3,L29H1"})  # not paths
    assert "65,536" in budget.BUDGET_TEXT


def test_uniform_edits_run_in_batches_that_bound_the_score_memory(tiny_worker):
    assert budget.edit_batch_size(2048, 9) == 1 and budget.edit_batch_size(64, 9) == 8
    assert budget.edit_batch_size(2048, 9) * 9 * 2048**2 <= budget.MAX_EDIT_CELLS
    out = run_op(tiny_worker, "intervene", heads="L0H0,L0H1,L0H2,L0H3,L1H0,L1H1,L1H2,L1H3", edit="uniform",
                 texts=["The cat sat on the mat."])
    assert out["event"] == "done" and len(out["result"]["rows"]) == 1


@pytest.mark.parametrize("reference", ["/etc/passwd", "../circuits/smollm2-135m_ioi.toml", "~/x", "a\\b",
                                       "smollm2-135m_ioi.toml"])
def test_a_path_as_reference_is_refused(tiny_worker, reference):
    out = run_op(tiny_worker, "run_analysis", analysis="sae_circuits", params={"reference": reference})
    assert out["event"] == "error" and "looks like a file path" in out["message"]
    analyses = [{"analysis": "sae_circuits", "params": {"reference": "", "n_examples": 10}}]
    with pytest.raises(C.AppInputError, match="looks like a file path"):
        R.analysis_request("sae_circuits", f"reference={reference}", analyses, ["smollm2-135m_ioi"])


def test_an_unknown_circuit_name_is_refused(tiny_worker):
    out = run_op(tiny_worker, "run_analysis", analysis="sae_circuits", params={"reference": "no_such_circuit"})
    assert out["event"] == "error" and "not a saved circuit" in out["message"]
    assert "smollm2-135m_ioi" in out["message"]
    analyses = [{"analysis": "sae_circuits", "params": {"reference": ""}}]
    with pytest.raises(C.AppInputError, match="not a saved circuit; name one of: smollm2-135m_ioi"):
        R.analysis_request("sae_circuits", "reference=nope", analyses, ["smollm2-135m_ioi"])


class FakeWorker:
    """Stands in for WorkerClient: knows one analysis, records submits, every job has failed."""

    info = {"model": "tiny", "n_layers": 2, "n_heads": 4, "n_ctx": 512,
            "analyses": [{"analysis": "attention_profile", "summary": "s", "params": {"n_prompts": 4, "n_tokens": 8}}]}

    def __init__(self):
        self.submitted = []

    def submit(self, op, args, on_done=None):
        json.dumps(args)
        self.submitted.append((op, args))
        return "job1"

    def status(self, job):
        return {"status": "error", "message": "failed", "result": None, "elapsed": 0.0}

    def wait(self, job, timeout):
        return self.status(job)

    def cancel(self, job):
        return self.status(job)

    def jobs(self):
        return []


GARBAGE = [None, 7, -1e308, [1, 2], {"a": "b"}, "x" * 100_000, True, "nan", "/etc/passwd"]


def _concrete(component_id: str):
    """A pattern-matching id as the renderer sends it: MATCH and ALL keys get a concrete value."""
    if not component_id.startswith("{"):
        return component_id
    return {k: "L0H0" if v in (["MATCH"], ["ALL"]) else v for k, v in json.loads(component_id).items()}


def _outputs(key: str) -> list[dict] | dict:
    """The renderer's `outputs`: a list for a multi-output callback ('..a.b...c.d..'), else one dict."""
    parts = [dict(zip(("id", "property"), p.rsplit(".", 1), strict=True)) for p in key.strip(".").split("...")]
    parts = [{"id": _concrete(p["id"]), "property": p["property"]} for p in parts]
    return parts if key.startswith("..") else parts[0]


def _arg(spec: dict, value) -> dict:
    """One input as the renderer sends it (a pattern-matching ALL input: `value` is the list of matched values)."""
    return {"id": _concrete(spec["id"]), "property": spec["property"], "value": value}


def test_malformed_payloads_to_every_callback_get_a_clear_answer(tmp_path):
    from workbench_app.main import create_app

    app = create_app("tiny", worker=FakeWorker(), results_dir=tmp_path / "results")
    http = app.server.test_client()
    failures, alerts = [], 0
    for key, cb in app.callback_map.items():
        if "callback" not in cb:  # a clientside callback: it runs in the browser, the server has nothing to answer
            continue
        specs = cb["inputs"] + cb["state"]
        cases = [[g] * len(specs) for g in GARBAGE]
        cases += [[g if i == j else None for j in range(len(specs))] for i in range(len(specs)) for g in GARBAGE]
        for values in cases:
            args = [_arg(s, [v] if s["id"].startswith("{") else v) for s, v in zip(specs, values, strict=True)]
            body = {"output": key, "outputs": _outputs(key), "inputs": args[:len(cb["inputs"])],
                    "state": args[len(cb["inputs"]):], "changedPropIds": [f"{specs[0]['id']}.{specs[0]['property']}"]}
            response = http.post("/_dash-update-component", json=body)
            text = response.get_data(as_text=True)
            alerts += "alert-error" in text
            if response.status_code not in (200, 204) or "Something went wrong" in text or "Traceback" in text:
                failures.append((key[:60], [str(v)[:20] for v in values], response.status_code, text[:300]))
    assert not failures, failures[:5]
    assert alerts > 100  # most garbage is answered with a message in the page, not silently dropped
    assert http.post("/_dash-update-component", json={}).status_code == 400
    assert "Malformed callback request" in http.post("/_dash-update-component", json={"output": 5}).get_json()["error"]


def test_number_fields_name_the_field_and_range():
    with pytest.raises(C.AppInputError, match=r"^Max tokens must be a whole number between 8 and 512; the field is em"):
        C.int_in(None, 8, 512, "Max tokens")
    with pytest.raises(C.AppInputError, match="between 8 and 512; got a list"):
        C.int_in([3], 8, 512, "Max tokens")
    with pytest.raises(C.AppInputError, match="got a bool"):
        C.int_in(True, 0, 3, "Sample prompt")
    with pytest.raises(C.AppInputError, match=r"α must be a number between 0 and 100; got 'inf'"):
        C.float_in("inf", 0, 100, "α")
    with pytest.raises(C.AppInputError, match="must be text; got a dict"):
        C.check_text({"a": 1}, "Your prompt")
    with pytest.raises(C.AppInputError, match="not a parameter name"):
        R.parse_params("n prompts=3")
