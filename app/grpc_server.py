"""The gRPC surface: the Open Inference Protocol's `inference.GRPCInferenceService` (what
tritonclient.grpc and KServe clients call), `grpc.health.v1` and server reflection, in the
process that serves HTTP, on its own port (NLP_SERVE_GRPC_PORT; off when unset).

It calls the same typed core as every HTTP surface (app/core.py, through the Open Inference
Protocol's task mapping in app/protocols/v2_tasks.py) and keeps HTTP's rules: API keys from
the call's metadata (`authorization: Bearer <key>` or `x-api-key`) on every method but the
probes, the request limits and NLP_SERVE_MAX_BODY_BYTES as the largest message, the call's
deadline as the request's (it may only shorten NLP_SERVE_REQUEST_TIMEOUT_MS), a cancelled call
dropping its queued items, `x-request-id` in (metadata) and out (trailing metadata), JSON
logs, request metrics (protocol="grpc"), traces (`traceparent` in the metadata), and errors
from the one table as gRPC status codes, with our error type and Retry-After in the trailing
metadata.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Tracer

from app import __version__, metrics
from app.auth import check_exposure, key_problem, offered_key
from app.core import CallContext, InferenceCore
from app.errors import (
    DEFAULT_RETRY_AFTER_S,
    InvalidInput,
    ModelNotFound,
    NotReady,
    ServeError,
    ServerBusy,
    status_and_type,
)
from app.logs import REQUEST_ID
from app.middleware import VALID_REQUEST_ID, access_logger
from app.protocols.grpc_v2 import inference_pb2 as pb
from app.protocols.grpc_v2.inference_pb2_grpc import (
    GRPCInferenceServiceServicer,
    add_GRPCInferenceServiceServicer_to_server,
)
from app.protocols.v2_codec import NUMERIC_DTYPES
from app.protocols.v2_grpc import infer_request_from_proto, infer_response_to_proto
from app.protocols.v2_tasks import (
    INPUTS,
    OUTPUTS,
    VERSION,
    check_offered,
    check_version,
    output_tensors,
    served_metadata,
)
from app.protocols.v2_tasks import infer as infer_task
from app.registry.model import ModelStatus
from app.settings import Settings
from app.spec import TaskName

logger = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
# Probes answer without a key and are never refused for being busy, as on HTTP.
PROBE_METHODS = frozenset(
    {f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady", f"/{HEALTH_SERVICE}/Check",
     f"/{HEALTH_SERVICE}/Watch"}
)  # fmt: skip
REFLECTION_PREFIX = "/grpc.reflection."

# The error table's HTTP status -> the gRPC status a client acts on.
STATUS_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
ERROR_TYPE_KEY = "nlp-serve-error-type"
REQUEST_ID_KEY = "x-request-id"
# Triton's platform names, so tools that read ModelConfig recognise the runtimes.
PLATFORMS = {"torch": "pytorch_libtorch", "onnx": "onnxruntime_onnx", "openvino": "openvino"}
DATA_TYPES = {
    "BYTES": pb.TYPE_STRING, "BOOL": pb.TYPE_BOOL, "UINT8": pb.TYPE_UINT8,
    "UINT16": pb.TYPE_UINT16, "UINT32": pb.TYPE_UINT32, "UINT64": pb.TYPE_UINT64,
    "INT8": pb.TYPE_INT8, "INT16": pb.TYPE_INT16, "INT32": pb.TYPE_INT32,
    "INT64": pb.TYPE_INT64, "FP16": pb.TYPE_FP16, "FP32": pb.TYPE_FP32, "FP64": pb.TYPE_FP64,
}  # fmt: skip
assert set(DATA_TYPES) == {*NUMERIC_DTYPES, "BYTES"}

ResponseT = TypeVar("ResponseT")
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler


def _metadata(context: Context) -> dict[str, str]:
    pairs = context.invocation_metadata() or ()
    return {key: value for key, value in pairs if isinstance(value, str)}


def request_id_of(metadata: Mapping[str, str]) -> str:
    """The caller's well-formed x-request-id, or a new one."""
    offered = metadata.get(REQUEST_ID_KEY, "")
    return offered if VALID_REQUEST_ID.fullmatch(offered.encode()) else uuid.uuid4().hex


class _Guard(grpc.aio.ServerInterceptor):
    """Keys before anything runs, on every service (reflection too, when the docs are
    protected); the probes and health never need one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _problem(self, method: str, metadata: Mapping[str, str]) -> str | None:
        keys = self.settings.api_keys
        if not keys or method in PROBE_METHODS:
            return None
        if method.startswith(REFLECTION_PREFIX) and not self.settings.protect_docs:
            return None
        as_headers = {
            key.encode("latin-1"): value.encode("latin-1") for key, value in metadata.items()
        }
        return key_problem(offered_key(as_headers), keys, "API key")

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        metadata = {k: v for k, v in details.invocation_metadata or () if isinstance(v, str)}
        problem = self._problem(details.method, metadata)
        if handler is None or problem is None:
            return handler
        return _refusing(handler, problem, request_id_of(metadata))


def _refusing(handler: Handler, problem: str, request_id: str) -> Handler:
    """A handler of the same kind as `handler` that answers UNAUTHENTICATED."""

    async def refuse(request: Any, context: Context) -> Any:
        trailing = ((ERROR_TYPE_KEY, "unauthorized"), (REQUEST_ID_KEY, request_id))
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem, trailing_metadata=trailing)

    async def refuse_stream(request: Any, context: Context) -> AsyncIterator[Any]:
        await refuse(request, context)
        yield None  # never reached: abort raises

    kind = (handler.request_streaming, handler.response_streaming)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[kind]
    behaviour = refuse_stream if handler.response_streaming else refuse
    return make(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


@dataclass
class _Call:
    """One call as the shared wrapper sees it; the model serving it, once known."""

    metadata: Mapping[str, str]
    model: str = ""


class _Calls:
    """What every inference-service method shares: the request id, the concurrency limit,
    metrics, the access log, a trace span, and errors as status codes."""

    def __init__(self, settings: Settings, tracer: Tracer | None) -> None:
        self.settings = settings
        self.tracer = tracer
        self.in_flight = 0

    @contextlib.contextmanager
    def _span(self, method: str, metadata: Mapping[str, str]) -> Iterator[None]:
        if self.tracer is None:
            yield
            return
        with self.tracer.start_as_current_span(
            f"{SERVICE}/{method}",
            context=propagate.extract(metadata),
            kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method},
        ):
            yield

    async def run(
        self,
        method: str,
        context: Context,
        body: Callable[[_Call], Awaitable[ResponseT]],
    ) -> ResponseT:
        call = _Call(_metadata(context))
        request_id = request_id_of(call.metadata)
        token = REQUEST_ID.set(request_id)
        # In the trailers, not the headers: sending initial metadata on its own costs a write
        # of its own (~75 us a call, measured); trailers go out with the answer or the error.
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        route = f"/{SERVICE}/{method}"
        status = 499  # until it ends otherwise: a cancelled call's task is torn down
        started = time.perf_counter()
        self.in_flight += 1
        metrics.INFLIGHT.inc()
        try:
            limit = self.settings.max_concurrency
            if limit is not None and self.in_flight > limit and route not in PROBE_METHODS:
                raise ServerBusy(
                    "the server has as many calls in progress as it takes "
                    "(NLP_SERVE_MAX_CONCURRENCY); retry after the retry-after seconds"
                )
            with self._span(method, call.metadata):
                response = await body(call)
            status = 200
            return response
        except ServeError as error:
            status, kind = status_and_type(error)
            await self._abort(context, error, status, kind, request_id)
            raise  # not reached: abort raises
        except Exception:
            status = 500
            logger.exception("unhandled error in %s", route)
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"unexpected server error; see the server log (request id {request_id})",
                trailing_metadata=(
                    (ERROR_TYPE_KEY, "internal_error"),
                    (REQUEST_ID_KEY, request_id),
                ),
            )
            raise  # not reached: abort raises
        finally:
            self.in_flight -= 1
            metrics.INFLIGHT.dec()
            self._record(route, call.model, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)

    def _record(self, route: str, model: str, status: int, seconds: float) -> None:
        labels = ("grpc", route, model, str(status))
        metrics.REQUESTS.labels(*labels).inc()
        metrics.REQUEST_SECONDS.labels(*labels).observe(seconds)
        if self.settings.access_log:
            access_logger.info(
                "gRPC %s %d %.1f ms",
                route,
                status,
                seconds * 1000,
                extra={
                    "method": "gRPC",
                    "route": route,
                    "model": model or None,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )

    @staticmethod
    async def _abort(
        context: Context,
        error: ServeError,
        status: int,
        kind: str,
        request_id: str,
    ) -> None:
        trailing = [(ERROR_TYPE_KEY, kind), (REQUEST_ID_KEY, request_id)]
        retry_after = error.headers.get("Retry-After")
        if retry_after is None and status == 503:
            retry_after = str(DEFAULT_RETRY_AFTER_S)
        if retry_after is not None:
            trailing.append(("retry-after", retry_after))
        message = error.message
        if status >= 500:
            message = f"{message} (request id {request_id})"
        code = STATUS_CODES.get(status, grpc.StatusCode.INTERNAL)
        await context.abort(code, message, trailing_metadata=tuple(trailing))


class InferenceService(GRPCInferenceServiceServicer):
    """inference.GRPCInferenceService on the typed core."""

    def __init__(self, core: InferenceCore, calls: _Calls) -> None:
        self.core = core
        self.calls = calls

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        async def body(_: _Call) -> pb.ServerLiveResponse:
            return pb.ServerLiveResponse(live=True)

        return await self.calls.run("ServerLive", context, body)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        async def body(_: _Call) -> pb.ServerReadyResponse:
            return pb.ServerReadyResponse(ready=self.core.registry.ready)

        return await self.calls.run("ServerReady", context, body)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        """Ready or not, as Triton answers it: an unknown model or version is not ready."""

        async def body(_: _Call) -> pb.ModelReadyResponse:
            try:
                self.core.handle(request.name)
                check_version(request.name, request.version or None)
            except (ModelNotFound, NotReady, InvalidInput):
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=True)

        return await self.calls.run("ModelReady", context, body)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        async def body(_: _Call) -> pb.ServerMetadataResponse:
            return pb.ServerMetadataResponse(name="nlp-serve", version=__version__, extensions=[])

        return await self.calls.run("ServerMetadata", context, body)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        async def body(_: _Call) -> pb.ModelMetadataResponse:
            meta = self._metadata(request.name, request.version or None)
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
                outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
            )

        return await self.calls.run("ModelMetadata", context, body)

    def _metadata(self, name: str, version: str | None) -> dict[str, Any]:
        return served_metadata(self.core, name, version)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        async def body(state: _Call) -> pb.ModelInferResponse:
            name = request.model_name
            task = self.core.handle(name).model.spec.task
            state.model = name
            check_version(name, request.model_version or None)
            parsed = infer_request_from_proto(request)
            remaining = context.time_remaining()
            timeout_ms = None if remaining is None else max(1, int(remaining * 1000))
            call = CallContext(self.core.deadline(timeout_ms), timeout_ms=timeout_ms)
            answer = await infer_task(self.core, task, parsed, name, call)
            tensors = output_tensors(task, answer.results)
            return infer_response_to_proto(name, VERSION, parsed, tensors)

        return await self.calls.run("ModelInfer", context, body)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        async def body(_: _Call) -> pb.ModelConfigResponse:
            return pb.ModelConfigResponse(config=self._config(request.name, request.version))

        return await self.calls.run("ModelConfig", context, body)

    def _config(self, name: str, version: str) -> pb.ModelConfig:
        model = self.core.handle(name).model
        check_version(name, version or None)
        task = model.spec.task
        check_offered(name, task)
        meta = self._metadata(name, None)
        batching = model.spec.batching

        def dims(shape: Sequence[int]) -> list[int]:
            return list(shape[1:])  # the batch dimension is max_batch_size's

        return pb.ModelConfig(
            name=name,
            platform=PLATFORMS.get(model.backend.name, model.backend.name),
            backend=model.backend.name,
            max_batch_size=batching.max_batch_size,
            input=[
                pb.ModelInput(name=s.name, data_type=DATA_TYPES[s.datatype], dims=dims(s.shape))
                for s in INPUTS[task]
            ],
            output=[
                pb.ModelOutput(
                    name=t["name"], data_type=DATA_TYPES[t["datatype"]], dims=dims(t["shape"])
                )
                for t in meta["outputs"]
            ],
            dynamic_batching=pb.ModelDynamicBatching(
                max_queue_delay_microseconds=int(batching.max_wait_ms * 1000)
            ),
        )

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        async def body(_: _Call) -> pb.RepositoryIndexResponse:
            if request.repository_name not in ("", "nlp-serve"):
                raise ModelNotFound(
                    f"no repository {request.repository_name!r}; this server has one, "
                    "'nlp-serve' (or send none)"
                )
            models = []
            for entry in self.core.registry.describe():
                ready = entry["status"] == ModelStatus.READY.value
                if request.ready and not ready:
                    continue
                reason = str(entry.get("error") or "")
                if TaskName(entry["task"]) not in OUTPUTS:  # ready, but native route only
                    reason = f"not offered on this protocol; POST /v1/{entry['task']}"
                models.append(
                    pb.RepositoryIndexResponse.ModelIndex(
                        name=entry["name"],
                        version=VERSION,
                        state="READY" if ready else str(entry["status"]).upper(),
                        reason=reason,
                    )
                )
            return pb.RepositoryIndexResponse(models=models)

        return await self.calls.run("RepositoryIndex", context, body)


class _Health(health_aio.HealthServicer):
    """grpc.health.v1: SERVING while every model is ready and the server is not draining,
    for the whole server ("") and for the inference service; NOT_SERVING otherwise."""

    def __init__(self, core: InferenceCore) -> None:
        super().__init__()
        self.core = core

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        if request.service not in ("", SERVICE):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(
            status=serving if self.core.registry.ready else not_serving
        )


class GrpcSurface:
    """The gRPC server's life: started once the models are ready, stopped (letting calls in
    flight finish within the grace) before they are closed."""

    def __init__(self, core: InferenceCore, settings: Settings, tracer: Tracer | None) -> None:
        assert settings.grpc_port is not None
        check_exposure(settings)  # the HTTP rule: no anonymous server beyond loopback
        self.settings = settings
        limit = settings.max_body_bytes
        self.server = grpc.aio.server(
            # No keys, nothing to check: an interceptor costs every call an extra await.
            interceptors=[_Guard(settings)] if settings.api_keys else [],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 1),  # every worker process listens on the one port
                # One connection cannot open streams without end (HTTP/2's suggested floor).
                ("grpc.max_concurrent_streams", 100),
            ],
        )
        calls = _Calls(settings, tracer)
        add_GRPCInferenceServiceServicer_to_server(InferenceService(core, calls), self.server)
        self.health = _Health(core)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME], self.server
        )
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        address = f"{host}:{settings.grpc_port}"
        self.port = self.server.add_insecure_port(address)
        self.address = address

    async def start(self) -> None:
        await self.server.start()
        logger.info("gRPC (KServe v2, health, reflection) listening on %s", self.address)

    async def stop(self, grace_s: float) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
