"""`toolkit serve` on the tiny random model: endpoints, batching, limits, errors, shutdown (loopback only)."""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import asyncio
import importlib.util

import pytest

from toolkit import load
from toolkit.serve.batcher import BatcherClosedError, MicroBatcher
from toolkit.cli_io import jsonable
from toolkit.serve import ServeOptions, create_app

MISSING = [m for m in ("fastapi", "uvicorn", "httpx", "prometheus_client") if importlib.util.find_spec(m) is None]
needs_server = pytest.mark.skipif(bool(MISSING), reason=f"pip install -e '.[serve]' (missing: {', '.join(MISSING)})")
if not MISSING:
    import httpx
    import uvicorn

TEXTS = [f"张三在北京{'医院' * (i % 4)}工作第{i}天" for i in range(20)]


def run_batcher(requests: list[list[str]], max_batch: int, max_wait_ms: float = 20.0, fail: str | None = None):
    """Submit ``requests`` at once; returns (answers, [(items, requests) per model call])."""
    calls: list[tuple[int, int]] = []

    def run(items):
        if fail is not None and fail in items:
            raise ValueError("bad item")
        return [x.upper() for x in items]

    async def go():
        batcher = MicroBatcher(run, executor, max_batch, max_wait_ms, lambda n, k, s: calls.append((n, k)))
        batcher.start()
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests), return_exceptions=True)
        await batcher.close()
        with pytest.raises(BatcherClosedError):
            await batcher.submit(["late"])
        return answers

    with ThreadPoolExecutor(1) as executor:
        return asyncio.run(go()), calls


def test_batcher_gathers_requests_and_answers_each_its_own():
    requests = [[f"t{i}", f"u{i}"] for i in range(10)]
    answers, calls = run_batcher(requests, max_batch=8)
    assert answers == [[x.upper() for x in r] for r in requests]
    assert all(n <= 8 for n, _ in calls) and sum(k for _, k in calls) == 10 and len(calls) < 10


def test_batcher_runs_a_request_larger_than_max_batch_alone():
    answers, calls = run_batcher([["a"] * 5, ["b"]], max_batch=2)
    assert answers == [["A"] * 5, ["B"]] and sorted(calls) == [(1, 1), (5, 1)]


def test_batcher_max_batch_1_is_one_call_per_request():
    _, calls = run_batcher([["a"], ["b"], ["c"]], max_batch=1)
    assert calls == [(1, 1)] * 3


def test_batcher_failure_reaches_only_the_failing_request():
    answers, _ = run_batcher([["a"], ["bad"], ["c"]], max_batch=8, fail="bad")
    assert answers[0] == ["A"] and answers[2] == ["C"] and isinstance(answers[1], ValueError)


class Server:
    """uvicorn in a thread on a free loopback port; ``stop()`` is a graceful shutdown."""

    def __init__(self, folder, **options) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.app = create_app([str(folder)], ServeOptions(**options))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        if not self.thread.is_alive():
            self.thread.start()
        for _ in range(300):  # up to 30 s
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not become ready in 30 s")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def server(tiny_folder):
    srv = Server(tiny_folder, max_wait_ms=50, max_texts=8, max_chars=200, max_body_bytes=20_000).start()
    yield srv
    srv.stop()


def post(server, body, name="tiny", **kw):
    return httpx.post(f"{server.url}/v1/models/{name}", timeout=30, **kw) if "content" in kw else httpx.post(f"{server.url}/v1/models/{name}", json=body, timeout=30)


@needs_server
def test_health_and_models(server):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    (model,) = httpx.get(server.url + "/v1/models").json()["models"]
    assert model["name"] == "tiny"
    assert model["tasks"]["ner"] == {"kind": "tagger", "input": "text", "labels": ["PER", "LOC", "ORG"]}
    assert model["tasks"]["match"]["input"] == "pair"
    assert httpx.get(server.url + "/openapi.json").status_code == 200


@needs_server
@pytest.mark.parametrize("body, call", [
    ({"text": TEXTS[0]}, lambda p: p(TEXTS[0])),
    ({"texts": TEXTS[:3]}, lambda p: p(TEXTS[:3])),
    ({"text": TEXTS[1], "tasks": ["ner"]}, lambda p: p.text(TEXTS[1])["ner"]),
    ({"pair": ["发热", "咳嗽"]}, lambda p: p("发热", "咳嗽")),
    ({"pairs": [["发热", "咳嗽"], ["北京", "上海"]]}, lambda p: p([("发热", "咳嗽"), ("北京", "上海")])),
])
def test_results_equal_the_library(server, tiny_folder, body, call):
    response = post(server, body)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == jsonable(call(load(str(tiny_folder))))


def model_calls(server) -> float:
    metrics = httpx.get(server.url + "/metrics").text
    prefix = 'toolkit_batch_requests_count{folder="tiny",input="text"}'
    return float(next((line.split()[-1] for line in metrics.splitlines() if line.startswith(prefix)), 0))


@needs_server
def test_concurrent_requests_get_their_own_results_in_shared_batches(server, tiny_folder):
    direct = jsonable(load(str(tiny_folder), tasks="ner")(TEXTS))
    assert any(direct), "the tiny tagger should find entities in some texts"
    before = model_calls(server)
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda t: post(server, {"text": t, "tasks": "ner"}), TEXTS))
    assert [r.json()["result"] for r in responses] == direct
    assert model_calls(server) - before < len(TEXTS)  # gathered: fewer model calls than requests
    assert 'toolkit_requests_total{model="tiny",status="200"}' in httpx.get(server.url + "/metrics").text


@needs_server
@pytest.mark.parametrize("body, status, words", [
    ({"text": 3}, 422, "text"),
    ({"texts": "one"}, 422, "texts"),
    ({"text": "a", "texts": ["b"]}, 422, "exactly one"),
    ({"txt": "a"}, 422, "txt"),
    ({"text": "a", "tasks": ["nope"]}, 422, "no task"),
    ({"pair": ["a"]}, 422, "pair"),
    ({"texts": ["短"] * 9}, 413, "at most 8"),
    ({"text": "长" * 201}, 413, "at most 200"),
    ({"texts": ["长" * 190] * 8 * 10}, 413, "bytes"),
    (b'{"text": "\\ud800"}', 422, "surrogate"),  # JSON can hold a lone surrogate; Python cannot encode it
])
def test_bad_requests_say_what_to_send(server, body, status, words):
    response = post(server, None, content=body) if isinstance(body, bytes) else post(server, body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


@needs_server
def test_malformed_json_and_unknown_model(server):
    response = post(server, None, content=b'{"text": ')
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    response = post(server, {"text": "a"}, name="nope")
    assert response.status_code == 404 and "tiny" in response.json()["detail"]


@needs_server
def test_a_failing_model_call_fails_only_its_request(server):
    batcher = server.app.state.service.folders[next(iter(server.app.state.service.folders))].batchers["text"]
    run = batcher.run

    def failing(texts):
        if any("BOOM" in t for t in texts):
            raise RuntimeError("boom")
        return run(texts)

    batcher.run = failing
    try:
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda t: post(server, {"text": t}), ["BOOM", "张三", "李四", "王五"]))
    finally:
        batcher.run = run
    assert [r.status_code for r in responses] == [500, 200, 200, 200]
    assert post(server, {"text": "张三"}).status_code == 200
    assert 'toolkit_errors_total{kind="model",model="tiny"}' in httpx.get(server.url + "/metrics").text


@needs_server
def test_timeout_gives_504(tiny_folder):
    srv = Server(tiny_folder, max_wait_ms=1000, timeout_s=0.2).start()
    try:
        response = post(srv, {"text": "张三"})
        assert response.status_code == 504 and "no answer within" in response.json()["detail"]
    finally:
        srv.stop()


@needs_server
def test_shutdown_finishes_requests_in_flight(tiny_folder):
    srv = Server(tiny_folder, max_wait_ms=500).start()
    with ThreadPoolExecutor(2) as pool:
        pending = [pool.submit(post, srv, {"text": t}) for t in TEXTS[:2]]
        time.sleep(0.2)  # both requests are waiting in the batcher
        srv.stop()
        responses = [f.result(timeout=30) for f in pending]
    assert [r.status_code for r in responses] == [200, 200]
    with pytest.raises(httpx.TransportError):
        httpx.get(srv.url + "/health", timeout=2)


@needs_server
def test_health_is_503_until_the_models_are_loaded(tiny_folder, monkeypatch):
    from toolkit.serve.service import Service

    loaded = threading.Event()
    original = Service.load

    def slow_load(self):
        loaded.wait(10)
        original(self)

    monkeypatch.setattr(Service, "load", slow_load)
    srv = Server(tiny_folder)
    srv.thread.start()  # without waiting for /health
    try:
        for _ in range(100):  # the port opens before the models load
            try:
                response = httpx.get(srv.url + "/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response.status_code == 503 and response.json()["status"] == "loading"
        assert post(srv, {"text": "张三"}).status_code == 503
        loaded.set()
        srv.start()  # waits for 200
    finally:
        loaded.set()
        srv.stop()
