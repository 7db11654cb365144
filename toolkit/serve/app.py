"""The FastAPI app of ``toolkit serve``: routes, error answers, lifespan (load, drain).

No ``from __future__ import annotations`` here: FastAPI reads the route annotations, which name
classes imported inside :func:`create_app`.
"""

import asyncio
import logging
import time
from typing import Any, Sequence

from .batcher import BatcherClosedError
from ..errors import InputError, UnknownNameError
from .service import SEND, Busy, ServeOptions, Service, TooLarge

logger = logging.getLogger(__name__)

INSTALL_HINT = "`toolkit serve` needs FastAPI, uvicorn and prometheus-client: pip install -e '.[serve]' (or: pip install fastapi uvicorn prometheus-client)"


def create_app(names: Sequence[str], options: ServeOptions | None = None):
    """The FastAPI app serving ``names`` (models load in the background once it starts).

    >>> app = create_app(["ner-medical"])  # doctest: +SKIP
    >>> import uvicorn; uvicorn.run(app, port=8000)  # doctest: +SKIP
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse, Response

        from .http import BodyLimit, Metrics, PredictRequest
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    from contextlib import asynccontextmanager

    options = options or ServeOptions()
    metrics = Metrics()
    service = Service(names, options, on_batch=metrics.batch)

    @asynccontextmanager
    async def lifespan(app):
        async def load() -> None:
            try:
                await asyncio.to_thread(service.load)
                service.start()
                logger.info("ready: %s", ", ".join(service.names))
            except Exception as err:  # noqa: BLE001 - reported by /health, logged
                service.error = f"{type(err).__name__}: {err}"
                logger.exception("loading the models failed")
        task = asyncio.create_task(load())
        yield
        if not task.done():
            await task
        await service.close()

    app = FastAPI(title="toolkit serve", description="Models of the toolkit over HTTP: POST /v1/models/{name} with text, texts, pair or pairs", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(BodyLimit, limit=options.max_body_bytes)

    def error(status: int, message: str, name: str | None, kind: str) -> JSONResponse:
        metrics.error(name, status, kind)
        return JSONResponse({"detail": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        name = metrics.known(request.path_params.get("name"), service.names)
        if any(e.get("type") == "json_invalid" for e in errors):
            return error(400, f"the body is not valid JSON: {SEND}", name, "bad_json")
        parts = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in errors[:5])
        return error(422, f"{parts}. {SEND}", name, "invalid")

    @app.get("/health")
    async def health() -> JSONResponse:
        if service.ready:
            return JSONResponse({"status": "ok", "models": list(service.names)})
        status = "failed: " + service.error if service.error else "loading"
        return JSONResponse({"status": status}, status_code=503)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return service.describe()

    @app.get("/metrics")
    async def metrics_page() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/v1/models/{name}")
    async def predict(name: str, body: PredictRequest) -> JSONResponse:
        label = metrics.known(name, service.names)
        if not service.ready:
            return error(503, "the models are still loading (or failed to load): poll GET /health until it answers 200", label, "not_ready")
        kind, inputs, single = body.inputs()
        start = time.perf_counter()
        try:
            tasks, results = await service.predict(name, inputs, kind, body.tasks)
        except UnknownNameError as err:
            return error(404, str(err), label, "unknown_model")
        except TooLarge as err:
            return error(413, str(err), label, "too_large")
        except InputError as err:
            return error(422, f"{err}. {SEND}", label, "invalid")
        except (asyncio.TimeoutError, TimeoutError):
            return error(504, f"no answer within {options.timeout_s} s; send fewer or shorter texts, or retry", label, "timeout")
        except (Busy, BatcherClosedError) as err:
            return error(503, str(err), label, "busy")
        except Exception as err:  # noqa: BLE001 - the model call failed: this request only
            return error(500, f"the model failed on this request ({type(err).__name__}: {err})", label, "model")
        metrics.done(label, time.perf_counter() - start)
        return JSONResponse({"model": name, "tasks": tasks, "result": results[0] if single else results})

    return app


