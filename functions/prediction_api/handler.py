"""Prediction API: API Gateway REST API (proxy integration, payload v1) -> Lambda.

Routes (all under /v1): POST /predict, POST /predict/batch, GET /health, GET /model,
GET /openapi.json. The body of ``lambda_handler`` is ``app.resolve``; the only other
branch is the release self-test ({"ocsf_detect_selftest": true}, invoked directly by the
pre-traffic hook). Errors become status codes here, and only here.
"""

from __future__ import annotations

import re
import time
from http import HTTPStatus
from typing import Annotated, Any

import orjson
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import (
    APIGatewayRestResolver,
    CORSConfig,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestValidationError,
    ValidationException,
)
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocsf_detect import names
from ocsf_detect.feedback import FeedbackError
from ocsf_detect.snapstart import prepare_snapshot
from ocsf_detect.telemetry import service_metrics
from prediction_api import adapters, service
from prediction_api.models import (
    BatchPrediction,
    BatchRequest,
    ErrorBody,
    ErrorCode,
    FeedbackRequest,
    FeedbackResult,
    FieldError,
    Health,
    ModelSummary,
    OcsfEvent,
    Prediction,
    RejectedResult,
)
from prediction_api.settings import get_settings
from prediction_api.suppressions import router as suppressions_router

API_TITLE = "ocsf-detect prediction API"
API_VERSION = "1.0.0"
REQUEST_ID_HEADER = "X-Request-Id"
ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/predict": ("POST",),
    "/v1/predict/batch": ("POST",),
    "/v1/health": ("GET",),
    "/v1/model": ("GET",),
    "/v1/openapi.json": ("GET",),
    "/v1/suppressions": ("GET", "POST"),
    "/v1/feedback": ("POST",),
}
# Routes with a path parameter: (pattern, its methods), for a 405 instead of a 404.
PARAM_ROUTES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"/v1/suppressions/[^/]+"), ("DELETE",)),
)

settings = get_settings()  # cold start fails here, naming the variable, if one is malformed
logger = Logger(service=names.SERVICE_NAME)
metrics = service_metrics()
tracer = Tracer(service=names.SERVICE_NAME)

app = APIGatewayRestResolver(
    enable_validation=True,
    cors=(
        CORSConfig(
            allow_origin=settings.cors_allow_origin,
            allow_headers=["Content-Type", "Authorization", "X-Amz-Date", "X-Amz-Security-Token"],
            expose_headers=[REQUEST_ID_HEADER],
        )
        if settings.cors_allow_origin
        else None
    ),
    # orjson is strict where json.loads is lenient: NaN/Infinity literals, numbers that
    # overflow a double, lone surrogates and nesting beyond 1,024 are all a clean 400.
    serializer=lambda obj: orjson.dumps(obj).decode(),
    json_body_deserializer=orjson.loads,
)


def _error_doc(description: str) -> Any:
    return _doc(description, ErrorBody)


def _doc(description: str, model: type[Any]) -> Any:
    # With `responses=` Powertools documents only what is listed, so 200 is listed too.
    return {"description": description, "content": {"application/json": {"model": model}}}


COMMON_ERRORS: dict[int, Any] = {500: _error_doc("internal error (with request id)")}
BODY_ERRORS: dict[int, Any] = {
    400: _error_doc("empty body or malformed JSON"),
    413: _error_doc("too many events, payload too large, or an event over the size cap"),
    415: _error_doc("Content-Type is not application/json"),
    422: _error_doc("schema violation (with the field path) or an event that cannot be scored"),
    503: _error_doc("the bundle could not be loaded"),
    **COMMON_ERRORS,
}


# --- routes --------------------------------------------------------------------------------
app.include_router(suppressions_router)  # GET/POST /v1/suppressions, DELETE .../{rule_id}


@app.post(
    "/v1/predict",
    summary="Score one OCSF event",
    description=(
        "An event of a class the bundle does not score, or one the detector rejects, is a "
        "422 whose `reason` and `field` say why (reason `unsupported_class` for the former)."
    ),
    responses={200: _doc("the event's score", Prediction), **BODY_ERRORS},
    tags=["predict"],
)
def predict(event: Annotated[OcsfEvent, Body()]) -> Prediction:
    _require_json()
    answer = service.predict_one(_scoring_detector(), event, settings.max_event_bytes)
    _count(answer.bundle_version, scored=1, anomalies=int(answer.is_anomaly))
    return answer


@app.post(
    "/v1/predict/batch",
    summary="Score up to 1,000 OCSF events",
    description="One result per event, in order; a bad event never fails the others.",
    responses={200: _doc("one result per event", BatchPrediction), **BODY_ERRORS},
    tags=["predict"],
)
def predict_batch(request: BatchRequest) -> BatchPrediction:
    _require_json()
    answer = service.predict_batch(
        _scoring_detector(),
        request.events,
        settings.max_batch_events,
        settings.max_event_bytes,
    )
    _count(answer.bundle_version, scored=answer.totals.scored, anomalies=answer.totals.anomalies)
    return answer


@app.post(
    "/v1/feedback",
    summary="An analyst's verdict on a finding",
    description=(
        "A `benign` verdict adds the event, as the bundle reads it, to the feedback overlay: "
        "events like it stop alerting, here at once and in the stream within the overlay's "
        "refresh interval, with no retraining. Every verdict is kept for `ocsf-detect "
        "train --feedback` and `ocsf-detect evaluate --feedback-labels`. Send the finding "
        "as received, or its source event."
    ),
    responses={
        200: _doc("the verdict was recorded", FeedbackResult),
        **BODY_ERRORS,
        422: _error_doc("schema violation, or a finding/event the verdict cannot be taken on"),
        503: _error_doc(
            "the bundle could not be loaded, no feedback bucket is configured, or the bucket "
            "failed (sending the same request again is safe)"
        ),
    },
    tags=["feedback"],
)
def feedback(request: FeedbackRequest) -> FeedbackResult:
    _require_json()
    answer = service.record_feedback(
        _detector(),
        adapters.get_feedback_store(settings.feedback_bucket),
        request,
        refresh_s=settings.feedback_refresh_s,
        now_ms=int(time.time() * 1000),
        max_event_bytes=settings.max_event_bytes,
        recorded_by=(caller := adapters.caller_of(app.current_event)),
    )
    logger.info(
        "verdict recorded",
        extra={
            "audit": "verdict",
            "caller": caller,
            "finding_uid": answer.finding_uid,
            "verdict": answer.verdict,
            "class_uid": answer.class_uid,
        },
    )
    metrics.add_dimension(names.METRIC_DIMENSION_BUNDLE_VERSION, answer.bundle_version)
    metrics.add_metric(names.METRIC_FEEDBACK_VERDICTS, MetricUnit.Count, 1)
    return answer


def _detector() -> Any:
    """The container's detector; an S3 bundle's download keeps to the request's deadline
    (adapters)."""
    return service.get_detector(
        settings,
        s3=adapters.get_bundle_client() if settings.bundle_s3_uri else None,
        before_read=adapters.before_bundle_read,
    )


def _scoring_detector() -> Any:
    """The detector, searching the feedback overlay when a feedback bucket is set."""
    return service.apply_feedback(
        _detector(),
        adapters.get_feedback_store(settings.feedback_bucket),
        settings.feedback_refresh_s,
    )


@app.get(
    "/v1/health",
    summary="Liveness and readiness",
    responses={200: _doc("alive; `ready` once the bundle is loaded", Health), **COMMON_ERRORS},
    tags=["ops"],
)
def health() -> Health:
    return service.health()


@app.get(
    "/v1/model",
    summary="The loaded bundle's public summary",
    responses={
        200: _doc("the bundle's public summary", ModelSummary),
        503: _error_doc("the bundle could not be loaded"),
        **COMMON_ERRORS,
    },
    tags=["ops"],
)
def model() -> ModelSummary:
    return service.model_summary(_detector())


@app.get("/v1/openapi.json", summary="This document", tags=["ops"])
def openapi() -> dict[str, Any]:
    return openapi_document()


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of this API, as served and as committed in docs/openapi.json."""
    document: dict[str, Any] = orjson.loads(
        app.get_openapi_json_schema(title=API_TITLE, version=API_VERSION)
    )
    return document


# --- errors: the one place where exceptions become status codes --------------------------
def _request_id() -> str | None:
    try:
        return str(app.current_event.request_context.request_id)
    except (AttributeError, KeyError, TypeError):
        return None


def _error(status: HTTPStatus, code: ErrorCode, message: str, **extra: Any) -> Response[Any]:
    headers = {"Allow": extra.pop("allow")} if "allow" in extra else None
    body = ErrorBody(error=code, message=message, request_id=_request_id(), **extra)
    return Response(
        status_code=status.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(exclude_none=True),
        headers=headers,
    )


class UnsupportedMediaTypeError(Exception):
    pass


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _require_json() -> None:
    """A missing Content-Type is read as JSON (as API Gateway's console sends it); any
    other media type is a 415 even if the body happens to parse."""
    content_type = app.current_event.headers.get("content-type")
    if content_type and not _is_json(content_type):
        raise UnsupportedMediaTypeError(content_type)


def _body_is_empty() -> bool:
    try:
        body = app.current_event.decoded_body
    except ValueError:  # undecodable base64 or bytes that are not UTF-8
        return False
    return body is None or not body.strip()


@app.exception_handler(UnsupportedMediaTypeError)
def _unsupported_media_type(exc: Exception) -> Response[Any]:
    return _error(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        f"Content-Type {exc} is not supported; send the body as application/json",
        field="Content-Type",
    )


@app.exception_handler(ValidationException)
def _invalid_request(exc: ValidationException) -> Response[Any]:
    errors = list(exc.errors())
    content_type = app.current_event.headers.get("content-type")
    if content_type and not _is_json(content_type):
        return _unsupported_media_type(UnsupportedMediaTypeError(content_type))
    if not isinstance(exc, RequestValidationError):  # a response failed its own schema
        return _internal_error(exc)
    about_body = any(tuple(err.get("loc", ()))[:1] == ("body",) for err in errors)
    if about_body and _body_is_empty():  # not a path parameter's error on a bodiless route
        return _error(
            HTTPStatus.BAD_REQUEST, "empty_body", "the request body is empty; send a JSON object"
        )
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return _error(
                HTTPStatus.BAD_REQUEST,
                "invalid_json",
                f"the body is not valid JSON ({detail}); send one JSON object",
            )
    fields = [
        FieldError(
            field=".".join(str(p) for p in err.get("loc", ())),
            message=str(err.get("msg", "invalid")),
            type=str(err.get("type", "invalid")),
        )
        for err in errors[:20]
    ]
    first = fields[0] if fields else None
    return _error(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "validation_error",
        f"{first.field}: {first.message}" if first else "the request does not match the schema",
        field=first.field if first else None,
        errors=fields,
    )


@app.exception_handler(ValueError)
def _undecodable_body(exc: ValueError) -> Response[Any]:
    # binascii.Error and UnicodeDecodeError from a base64 body: the client's bytes, not us.
    if isinstance(exc, UnicodeDecodeError) or type(exc).__module__ == "binascii":
        return _error(HTTPStatus.BAD_REQUEST, "invalid_json", "the body is not UTF-8 encoded JSON")
    return _internal_error(exc)


@app.exception_handler(service.EventNotScoredError)
def _not_scored(exc: service.EventNotScoredError) -> Response[Any]:
    reason = exc.result.reason if isinstance(exc.result, RejectedResult) else "unsupported_class"
    return _error(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "unsupported_class" if reason == "unsupported_class" else "rejected_event",
        exc.message,
        reason=reason,
        field=exc.field,
    )


@app.exception_handler(service.EventTooLargeError)
def _event_too_large(exc: service.EventTooLargeError) -> Response[Any]:
    return _error(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        "too_large",
        exc.message,
        reason="too_large",
        field=exc.field,
    )


@app.exception_handler(service.BatchTooLargeError)
def _too_large(exc: service.BatchTooLargeError) -> Response[Any]:
    return _error(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "payload_too_large", exc.message, field=exc.field
    )


@app.exception_handler(service.BundleUnavailableError)
def _no_bundle(exc: service.BundleUnavailableError) -> Response[Any]:
    # The cause (S3 code, archive problem, version mismatch) is for the logs, not callers.
    logger.error("bundle unavailable", extra={"error": exc.message, "field": exc.field})
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "bundle_unavailable",
        "the model bundle is not available; retry later",
    )


@app.exception_handler(FeedbackError)
def _invalid_feedback(exc: FeedbackError) -> Response[Any]:
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_feedback", exc.message, field=exc.field)


@app.exception_handler(service.FeedbackUnavailableError)
def _no_feedback(exc: Exception) -> Response[Any]:
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "feedback_unavailable",
        f"feedback is not configured for this API ({names.ENV_FEEDBACK_BUCKET} is unset)",
    )


@app.exception_handler(service.FeedbackStoreError)
def _feedback_store_failed(exc: service.FeedbackStoreError) -> Response[Any]:
    cause = exc.cause if exc.cause is not None else repr(exc.__cause__)
    logger.warning("feedback bucket failed", extra={"cause": cause})
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, "feedback_unavailable", exc.message)


@app.not_found
def _not_found(exc: Exception) -> Response[Any]:
    path = app.current_event.path
    route = path.rstrip("/") or "/"
    allowed = ROUTES.get(route) or next(
        (methods for pattern, methods in PARAM_ROUTES if pattern.fullmatch(route)), None
    )
    if allowed:
        return _error(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method_not_allowed",
            f"{app.current_event.http_method} is not allowed on {path}; use {', '.join(allowed)}",
            allow=", ".join(allowed),
        )
    return _error(
        HTTPStatus.NOT_FOUND,
        "not_found",
        f"no route {path}; see GET /v1/openapi.json for the routes",
    )


@app.exception_handler(Exception)
def _internal_error(exc: Exception) -> Response[Any]:
    logger.exception("unhandled error", extra={"request_id": _request_id()})
    return _error(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error; quote the request id when reporting it",
    )


def _count(bundle_version: str, *, scored: int, anomalies: int) -> None:
    metrics.add_dimension(names.METRIC_DIMENSION_BUNDLE_VERSION, bundle_version)
    metrics.add_metric(names.METRIC_PREDICTIONS, MetricUnit.Count, scored)
    metrics.add_metric(names.METRIC_PREDICTED_ANOMALIES, MetricUnit.Count, anomalies)


# --- entry point ---------------------------------------------------------------------------
def _is_selftest(event: Any) -> bool:
    return (
        isinstance(event, dict)
        and event.get(names.SELFTEST_PAYLOAD_KEY) is True
        and "httpMethod" not in event
    )


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is not None:
        adapters.start_request(remaining())  # every AWS call keeps to it (adapters)
    try:
        if _is_selftest(event):
            return _detector().selftest()
        _json_media_as_validation_reads_it(event)
        response = app.resolve(event, context)
    finally:
        adapters.end_request()
    return _with_request_id(response, event)


JSON_MEDIA = "application/json"


def _json_media_as_validation_reads_it(event: dict[str, Any]) -> None:
    """Powertools' request validation parses a body only under a Content-Type that starts
    with ``application/json`` as written (any other answers its own 415, which reached the
    client as a 500); this API also takes ``application/*+json`` in any case
    (``_is_json``), so such a header is rewritten to ``application/json`` first."""
    for key in ("headers", "multiValueHeaders"):
        headers = event.get(key)
        if not isinstance(headers, dict):
            continue
        for name, value in list(headers.items()):
            if isinstance(name, str) and name.lower() == "content-type":
                headers[name] = (
                    [_as_json_media(v) for v in value]
                    if isinstance(value, list)
                    else _as_json_media(value)
                )


def _as_json_media(value: Any) -> Any:
    return JSON_MEDIA if isinstance(value, str) and _is_json(value) else value


def _with_request_id(response: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    request_id = (event.get("requestContext") or {}).get("requestId")
    if request_id:
        # Powertools answers REST (v1) events with multiValueHeaders; API Gateway merges
        # both maps, so the id goes in one of them only.
        multi = response.get("multiValueHeaders")
        if isinstance(multi, dict):
            multi[REQUEST_ID_HEADER] = [request_id]
        else:
            response.setdefault("headers", {})[REQUEST_ID_HEADER] = request_id
    return response


# SnapStart (a stage setting): the bundle loads during init, so the snapshot holds it.
if settings.load_at_init:
    prepare_snapshot(_detector)
