"""HTTP pieces of ``toolkit serve`` (imported only when FastAPI is installed): the request body,
the body-size limit and the Prometheus metrics."""
from __future__ import annotations

import json
from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

Pair = tuple[StrictStr, StrictStr]


class PredictRequest(BaseModel):
    """Exactly one of ``text``, ``texts``, ``pair``, ``pairs``; ``tasks`` optional.

    Example: ``{"texts": ["患者发热三天。", "无不适"], "tasks": ["ner_medical"]}``
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"text": "患者三天前出现发热。"}]})

    text: Optional[StrictStr] = None
    texts: Optional[list[StrictStr]] = Field(None, min_length=1)
    pair: Optional[Pair] = None
    pairs: Optional[list[Pair]] = Field(None, min_length=1)
    tasks: Optional[list[StrictStr] | StrictStr] = Field(None, description="task names or registered names of the model's tasks")

    @model_validator(mode="after")
    def _one_input(self) -> "PredictRequest":
        given = [k for k in ("text", "texts", "pair", "pairs") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, texts, pair, pairs (got {', '.join(given) or 'none'})")
        return self

    def inputs(self) -> tuple[str, list[Any], bool]:
        """``(kind, inputs, single)``: ``kind`` is ``"text"`` or ``"pair"``."""
        if self.text is not None:
            return "text", [self.text], True
        if self.texts is not None:
            return "text", list(self.texts), False
        if self.pair is not None:
            return "pair", [self.pair], True
        return "pair", list(self.pairs or []), False


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before anything parses it; a
    POST body is read as JSON whatever its ``Content-Type`` (``curl -d`` sends a form type)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def _refuse(self, send: Any, size: str) -> None:
        body = json.dumps({"detail": f"the body has {size} bytes; at most {self.limit}: send fewer or shorter texts per request"}).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send, declared.decode())
        chunks, size, more = [], 0, True
        while more:  # read (up to the limit) before the app, so a chunked body is bounded too
            message = await receive()
            if message["type"] != "http.request":
                return None  # client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(send, f"more than {self.limit}")
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
        scope = {**scope, "headers": headers + [(b"content-type", b"application/json")]}
        return await self.app(scope, replay, send)


class Metrics:
    """Prometheus metrics in a registry of their own (several apps in one process do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("toolkit_requests", "Prediction requests by model and HTTP status", ["model", "status"], registry=r)
        self.latency = Histogram("toolkit_request_seconds", "Latency of answered prediction requests", ["model"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_texts = Histogram("toolkit_batch_texts", "Texts (or pairs) per model call", ["folder", "input"], registry=r,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_requests = Histogram("toolkit_batch_requests", "Requests per model call", ["folder", "input"], registry=r,
                                        buckets=(1, 2, 4, 8, 16, 32, 64))
        self.batch_seconds = Histogram("toolkit_batch_seconds", "Time of one model call", ["folder", "input"], registry=r)
        self.errors = Counter("toolkit_errors", "Requests answered with an error, by kind", ["model", "kind"], registry=r)

    @staticmethod
    def known(name: Any, served: Any) -> str:
        """The metrics label of a model name: unknown names share one label (bounded cardinality)."""
        return name if isinstance(name, str) and name in served else "unknown"

    def batch(self, folder: str, kind: str, texts: int, requests: int, seconds: float) -> None:
        self.batch_texts.labels(folder, kind).observe(texts)
        self.batch_requests.labels(folder, kind).observe(requests)
        self.batch_seconds.labels(folder, kind).observe(seconds)

    def done(self, model: str, seconds: float) -> None:
        self.requests.labels(model, "200").inc()
        self.latency.labels(model).observe(seconds)

    def error(self, model: str | None, status: int, kind: str) -> None:
        self.requests.labels(model or "unknown", str(status)).inc()
        self.errors.labels(model or "unknown", kind).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
