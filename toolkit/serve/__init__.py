"""``toolkit serve``: models behind an HTTP API (FastAPI on uvicorn; ``pip install -e .[serve]``).

Endpoints:

* ``POST /v1/models/{name}`` with ``{"text": "..."}``, ``{"texts": [...]}``, ``{"pair": [a, b]}`` or
  ``{"pairs": [[a, b], ...]}``, optionally ``"tasks": ["ner_medical"]`` (task or registered names of
  the model's tasks). Answers ``{"model", "tasks", "result"}``: ``result`` is what
  ``toolkit.load(name, tasks=...)`` returns for that input, as JSON (one result for ``text``/``pair``,
  a list for ``texts``/``pairs``).
* ``GET /v1/models``: served names, their folder, tasks (kind, labels), versions, runtime (with ``--runtime auto``,
  each model's chosen one too).
* ``GET /health``: 503 while the models load, then 200. ``GET /metrics``: Prometheus (requests by
  model and status, latency, texts and requests per model call, errors). ``GET /docs``: OpenAPI.

**Batching.** One pipeline is loaded per model *folder*, with the union of the tasks of the names
served from it (``ner-medical`` and ``sentiment`` share ``pretrained/zh-multitask``: one load, one
encoder pass). Each folder has one :class:`toolkit.serve.batcher.MicroBatcher` for texts and one for
pairs, both on one single-thread executor: the requests for any name of the folder that queued while
the model ran the previous call (and, with ``--max-wait-ms N``, those arriving within N ms) are
gathered, up to ``max_batch`` texts, into one pipeline call; each request then picks its own tasks
out of the combined result. ``--max-batch 1``: one request, one call. Trade-off: a request for one
name also runs the heads of the other names served from its folder (heads are cheap next to the
encoder; serve a name alone to run only its heads).

**Limits.** Body bytes (413), texts per request (413), characters per text (413; long texts are
windowed as in the library, up to this cap), per-request timeout (504), queued requests per folder
(503). Malformed JSON: 400; wrong fields or types: 422; unknown model: 404; each message says what
to send. A failing model call answers 500 to the request that causes it only (the others of its
batch are run again alone). Shutdown (Ctrl-C, SIGTERM) stops taking connections, answers the
requests in flight, then drains the batchers.

Example::

    toolkit serve ner-medical sentiment --runtime onnx --quantize int8 --port 8000
    curl -s localhost:8000/v1/models/ner-medical -d '{"text": "患者三天前出现发热。"}'
"""
from __future__ import annotations

import argparse
import logging
from typing import Any, Sequence

from ..cli_io import add_runtime_options, check_runtime_options, positive_float, positive_int
from .app import INSTALL_HINT, create_app
from .service import ServeOptions, Service

logger = logging.getLogger(__name__)


def serve(names: Sequence[str], host: str = "127.0.0.1", port: int = 8000, options: ServeOptions | None = None, access_log: bool = False) -> None:
    """Serve ``names`` until Ctrl-C / SIGTERM (then finish the requests in flight).

    >>> serve(["ner-medical"], port=8000, options=ServeOptions(runtime="onnx", quantize="int8"))  # doctest: +SKIP
    """
    try:
        import uvicorn
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    options = options or ServeOptions()
    app = create_app(names, options)
    uvicorn.run(app, host=host, port=port, access_log=access_log, timeout_graceful_shutdown=int(options.timeout_s) + 5)


def _cmd_serve(args: argparse.Namespace) -> int:
    check_runtime_options(args)
    options = ServeOptions(
        runtime=args.runtime, quantize=args.quantize, threads=args.threads, batch_size=args.batch_size, max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms, max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout, max_queue=args.max_queue,
    )
    serve(args.model, args.host, args.port, options, access_log=args.verbose)
    return 0


def register_cli(sub: Any) -> None:
    """Add ``toolkit serve`` to the CLI's subparsers."""
    d = ServeOptions()
    p = sub.add_parser("serve", help="serve models over HTTP (FastAPI; needs the [serve] extra)")
    p.add_argument("model", nargs="+", help="registered names or model folders (a folder is served under its folder name)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=8000)
    add_runtime_options(p, default=d.runtime)
    p.add_argument("--threads", type=positive_int, help="CPU threads per model (onnx: per session, default 2; torch: process-wide)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, help=f"texts per encoder pass inside one gathered model call (default {d.batch_size}: gathered texts have mixed lengths, smaller passes pad less)")
    p.add_argument("--max-batch", type=positive_int, default=d.max_batch, help=f"texts of concurrent requests gathered into one model call (default {d.max_batch}; 1 = no batching)")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms, help=f"how long a call waits for more requests to batch with (default {d.max_wait_ms}: no wait, it takes what queued while the model was busy)")
    p.add_argument("--max-texts", type=positive_int, default=d.max_texts, help=f"texts or pairs per request (default {d.max_texts})")
    p.add_argument("--max-chars", type=positive_int, default=d.max_chars, help=f"characters per text (default {d.max_chars}; longer texts are windowed up to this)")
    p.add_argument("--max-body-bytes", type=positive_int, default=d.max_body_bytes)
    p.add_argument("--max-queue", type=positive_int, default=d.max_queue, help="waiting requests per model before 503")
    p.add_argument("--timeout", type=positive_float, default=d.timeout_s, help=f"seconds per request before 504 (default {d.timeout_s})")
    p.set_defaults(func=_cmd_serve)


__all__ = ["ServeOptions", "Service", "create_app", "register_cli", "serve"]
