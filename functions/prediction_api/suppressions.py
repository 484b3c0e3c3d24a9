"""/v1/suppressions: list, add and delete the rules that keep anomalies from being published.

The rules live in the alert-state table (``ocsf_detect.alertstate``); the stream function
reads them with a short cache (``OCSF_DETECT_SUPPRESSION_CACHE_S``, 60 s by default), so a
new rule takes effect within that time. The routes share the app's authentication (every
route of the REST API requires it) and are in its OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from ocsf_detect import names
from ocsf_detect.alertstate import (
    ConcurrentRuleChangeError,
    DynamoRuleTable,
    RuleNotFoundError,
    UnreadableRuleError,
)
from ocsf_detect.suppression import Condition, SuppressionRule
from prediction_api import adapters
from prediction_api.models import ErrorBody, ErrorCode
from prediction_api.settings import get_settings

router = APIGatewayRouter()
logger = Logger(service=names.SERVICE_NAME, child=True)
RULE_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"


class SuppressionRequest(BaseModel):
    """A new rule: conditions that must all match, why, and until when (optional)."""

    model_config = ConfigDict(extra="forbid")

    match: list[Condition] = Field(min_length=1, max_length=10)
    reason: str = Field(min_length=1, max_length=500)
    expires_at: datetime | None = Field(
        default=None, description="ISO 8601; a rule past it no longer suppresses"
    )


class StoredRule(SuppressionRule):
    active: bool = Field(description="false once expires_at has passed")
    created_by: str | None = Field(
        default=None,
        description="the caller who added it (IAM ARN, or api-key:<id>); null when not recorded",
    )


class SuppressionList(BaseModel):
    rules: list[StoredRule]


class SuppressionsUnavailableError(Exception):
    """No alert-state table is configured, or it failed the request (a 503)."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause  # for the log


def _doc(description: str, model: type[Any]) -> Any:
    return {"description": description, "content": {"application/json": {"model": model}}}


UNAVAILABLE = {
    503: _doc(
        "no alert-state table is configured, or the table failed the request or did not "
        "answer within the request's time (sending the same request again is safe)",
        ErrorBody,
    ),
    500: _doc("internal error (with request id)", ErrorBody),
}


def rule_table() -> DynamoRuleTable:
    name = get_settings().alert_table_name
    if not name:
        raise SuppressionsUnavailableError(
            "suppression rules are not available: no alert-state table is configured"
        )
    return adapters.get_rule_table(name)


@contextmanager
def _table_call() -> Iterator[None]:
    """A failure of the table (an error answer, no answer within the request's time) is
    the routes' 503; every route is safe to send again."""
    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise SuppressionsUnavailableError(
            f"the alert-state table failed the request ({type(exc).__name__}); sending the "
            "same request again is safe",
            cause=str(exc),
        ) from exc


def _stored(rule: SuppressionRule, created_by: str | None, now: datetime) -> StoredRule:
    return StoredRule(**rule.model_dump(), active=rule.in_force(now), created_by=created_by)


@router.get(
    "/v1/suppressions",
    summary="The suppression rules",
    description="Every rule, oldest first; expired ones are listed with `active: false` "
    "for a day, then removed.",
    responses={200: _doc("the rules", SuppressionList), **UNAVAILABLE},
    tags=["suppressions"],
)
def list_suppressions() -> SuppressionList:
    now = datetime.now(UTC)
    with _table_call():
        rules = rule_table().list_stored()
    return SuppressionList(rules=[_stored(r, creator, now) for r, creator in rules])


@router.post(
    "/v1/suppressions",
    summary="Add a suppression rule",
    description=(
        "Anomalies whose finding matches every condition are counted and archived, never "
        "published. A condition's `field` is a dotted path into the Detection Finding, or "
        "into the source event after `event.` (e.g. `event.src_endpoint.ip`); `op` is "
        "`equals`, `cidr` or `prefix`. The stream applies a new rule within its cache time "
        "(60 s by default)."
    ),
    responses={
        201: _doc(
            "the rule as stored, with its id: a digest of its conditions, reason and expiry, "
            "so the same rule sent again answers with the rule first stored",
            StoredRule,
        ),
        400: _doc("empty body or malformed JSON", ErrorBody),
        415: _doc("Content-Type is not application/json", ErrorBody),
        409: _doc(
            "`rule_unreadable`: an item this version cannot read (written by a later "
            "version, or by hand) is stored under the rule's id; deleting that id lets the "
            "rule be added. `rule_conflict`: the same rule was deleted and added by others "
            "throughout the request; sending it again is safe",
            ErrorBody,
        ),
        422: _doc("schema violation (with the field path)", ErrorBody),
        **UNAVAILABLE,
    },
    tags=["suppressions"],
)
def add_suppression(request: SuppressionRequest) -> Response[StoredRule]:
    now = datetime.now(UTC)
    rule = SuppressionRule.new(
        request.match, reason=request.reason, now=now, expires_at=request.expires_at
    )
    caller = adapters.caller_of(router.current_event)
    with _table_call():
        stored, creator = rule_table().put(rule, caller)
    logger.info(
        "suppression rule added" if stored is rule else "suppression rule already stored",
        extra={
            "audit": "rule_added" if stored is rule else "rule_repeated",
            "caller": caller,
            "rule_id": stored.id,
        },
    )
    rule = stored
    return Response(
        status_code=HTTPStatus.CREATED.value,
        content_type=content_types.APPLICATION_JSON,
        body=_stored(rule, creator, now),
    )


@router.delete(
    "/v1/suppressions/<rule_id>",
    summary="Delete a suppression rule",
    responses={
        204: {"description": "deleted"},
        404: _doc("no rule with this id", ErrorBody),
        422: _doc("the id is malformed", ErrorBody),
        **UNAVAILABLE,
    },
    tags=["suppressions"],
)
def delete_suppression(rule_id: Annotated[str, Path(pattern=RULE_ID_PATTERN)]) -> Response[None]:
    with _table_call():
        rule_table().delete(rule_id)
    caller = adapters.caller_of(router.current_event)
    logger.info(
        "suppression rule deleted",
        extra={"audit": "rule_deleted", "caller": caller, "rule_id": rule_id},
    )
    return Response(status_code=HTTPStatus.NO_CONTENT.value, body=None)


def _request_id() -> str | None:
    try:
        return str(router.current_event.request_context.request_id)
    except (AttributeError, KeyError, TypeError):
        return None


@router.exception_handler(SuppressionsUnavailableError)
def _unavailable(exc: SuppressionsUnavailableError) -> Response[Any]:
    if exc.cause is not None:
        logger.warning("alert-state table failed", extra={"cause": exc.cause})
    body = ErrorBody(
        error="suppressions_unavailable",
        message=exc.message,
        request_id=_request_id(),
    )
    return Response(
        status_code=HTTPStatus.SERVICE_UNAVAILABLE.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(exclude_none=True),
    )


@router.exception_handler(UnreadableRuleError)
def _unreadable(exc: UnreadableRuleError) -> Response[Any]:
    logger.warning("suppression rule not added: unreadable item", extra={"cause": str(exc)})
    return _conflict(
        "rule_unreadable",
        f"an item this version cannot read is stored under the rule's id {exc.rule_id}; "
        f"DELETE /v1/suppressions/{exc.rule_id} removes it, then the rule can be added",
    )


@router.exception_handler(ConcurrentRuleChangeError)
def _changed(exc: ConcurrentRuleChangeError) -> Response[Any]:
    logger.warning(
        "suppression rule not added: it changed during the request", extra={"rule_id": exc.rule_id}
    )
    return _conflict("rule_conflict", f"{exc}; sending the same request again is safe")


def _conflict(error: ErrorCode, message: str) -> Response[Any]:
    body = ErrorBody(error=error, message=message, request_id=_request_id())
    return Response(
        status_code=HTTPStatus.CONFLICT.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(exclude_none=True),
    )


@router.exception_handler(RuleNotFoundError)
def _no_rule(exc: RuleNotFoundError) -> Response[Any]:
    body = ErrorBody(
        error="not_found",
        message=f"{exc}; GET /v1/suppressions lists the rules",
        request_id=_request_id(),
        field="rule_id",
    )
    return Response(
        status_code=HTTPStatus.NOT_FOUND.value,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump(exclude_none=True),
    )
