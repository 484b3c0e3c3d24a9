"""Prediction API: authentication on every method, throttling, logs, tracing, WAF in prod."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from aws_cdk.assertions import Match

from ocsf_detect import names

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized


def _predictor_alias_id(s: Synthesized) -> str:
    predictor = next(
        k
        for k, r in s.resources("AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == names.API_HANDLER
    )
    return next(
        k
        for k, r in s.resources("AWS::Lambda::Alias").items()
        if r["Properties"]["FunctionName"] == {"Ref": predictor}
    )


def test_every_method_requires_iam_auth(stage_synth: Synthesized) -> None:
    methods = stage_synth.resources("AWS::ApiGateway::Method")
    assert len(methods) >= 2
    for logical_id, method in methods.items():
        assert method["Properties"]["AuthorizationType"] == "AWS_IAM", logical_id


def test_api_key_mode_requires_a_key_on_every_method(synth) -> None:
    s = synth("dev", apiAuth="api_key")
    methods = s.resources("AWS::ApiGateway::Method")
    assert methods
    for logical_id, method in methods.items():
        assert method["Properties"]["ApiKeyRequired"] is True, logical_id
    _, plan = s.only("AWS::ApiGateway::UsagePlan")
    config = s.stack.settings.stage.api
    assert plan["Properties"]["Throttle"] == {
        "BurstLimit": config.throttle_burst,
        "RateLimit": config.throttle_rate,
    }
    assert plan["Properties"]["Quota"] == {"Limit": config.quota_per_day, "Period": "DAY"}
    s.only("AWS::ApiGateway::ApiKey")
    s.only("AWS::ApiGateway::UsagePlanKey")


def _invocable_routes(policy: dict[str, Any], api_id: str) -> set[str]:
    """'METHOD /path' of every execute-api ARN the policy allows, on this API's stage."""
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    routes = set()
    for arn in statement["Resource"]:
        parts = arn["Fn::Join"][1]
        assert {"Ref": api_id} in parts
        tail = parts[-1]  # "/v1/POST/v1/predict"
        stage, method, path = tail.lstrip("/").split("/", 2)
        assert stage == "v1"
        routes.add(f"{method} /{path}")
    return routes


def test_each_kind_of_caller_has_a_policy_of_its_routes(stage_synth: Synthesized) -> None:
    api_id, _ = stage_synth.only("AWS::ApiGateway::RestApi")
    policies = {
        p["Properties"]["Description"].rsplit("a ", 1)[1].split()[0]: p
        for p in stage_synth.resources("AWS::IAM::ManagedPolicy").values()
        if "prediction API" in p["Properties"].get("Description", "")
    }
    scoring = {"POST /v1/predict", "POST /v1/predict/batch", "GET /v1/health"}
    scoring |= {"GET /v1/model", "GET /v1/openapi.json"}
    assert _invocable_routes(policies["scoring"], api_id) == scoring
    # an analyst also judges findings and manages the rules, which silence alerts; a
    # scoring client may do neither
    assert _invocable_routes(policies["analyst"], api_id) == scoring | {
        "POST /v1/feedback",
        "GET /v1/suppressions",
        "POST /v1/suppressions",
        "DELETE /v1/suppressions/*",
    }
    outputs = stage_synth.json["Outputs"]
    for kind in ("Scoring", "Analyst"):
        assert any(name.startswith(f"PredictionApi{kind}CallerPolicyArn") for name in outputs)


def test_api_key_mode_has_no_caller_policies(synth) -> None:
    s = synth("dev", apiAuth="api_key")
    assert not [
        p
        for p in s.resources("AWS::IAM::ManagedPolicy").values()
        if "prediction API" in p["Properties"].get("Description", "")
    ]


def test_proxy_integration_invokes_the_live_alias(dev: Synthesized) -> None:
    alias_id = _predictor_alias_id(dev)
    for method in dev.resources("AWS::ApiGateway::Method").values():
        integration = method["Properties"]["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert alias_id in json.dumps(integration["Uri"])
    # API Gateway may invoke the alias, and only the alias
    for permission in dev.resources("AWS::Lambda::Permission").values():
        if permission["Properties"]["Principal"] != "apigateway.amazonaws.com":
            continue  # the alert-state schedule invokes the scorer
        assert permission["Properties"]["FunctionName"] == {"Ref": alias_id}


def test_stage_throttles_traces_and_logs_access(stage_synth: Synthesized) -> None:
    config = stage_synth.stack.settings.stage.api
    _, stage = stage_synth.only("AWS::ApiGateway::Stage")
    props = stage["Properties"]
    assert props["TracingEnabled"] is True
    (settings,) = props["MethodSettings"]
    assert settings["ThrottlingRateLimit"] == config.throttle_rate
    assert settings["ThrottlingBurstLimit"] == config.throttle_burst
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["DataTraceEnabled"] is False
    destination = json.dumps(props["AccessLogSetting"]["DestinationArn"])
    log_groups = stage_synth.resources("AWS::Logs::LogGroup")
    assert any(f'"{log_group}"' in destination for log_group in log_groups)
    assert "requestId" in props["AccessLogSetting"]["Format"]


def test_requests_are_validated(dev: Synthesized) -> None:
    validator_id, validator = dev.only("AWS::ApiGateway::RequestValidator")
    assert validator["Properties"]["ValidateRequestBody"] is True
    assert validator["Properties"]["ValidateRequestParameters"] is True
    for method in dev.resources("AWS::ApiGateway::Method").values():
        assert method["Properties"]["RequestValidatorId"] == {"Ref": validator_id}


def test_waf_only_where_the_stage_asks(dev: Synthesized, prod: Synthesized) -> None:
    assert not dev.resources("AWS::WAFv2::WebACL")
    _, acl = prod.only("AWS::WAFv2::WebACL")
    rules = {r["Name"]: r for r in acl["Properties"]["Rules"]}
    assert rules["rate-limit-per-ip"]["Statement"]["RateBasedStatement"]["AggregateKeyType"] == "IP"
    prod.template.has_resource_properties(
        "AWS::WAFv2::WebACLAssociation",
        {"ResourceArn": Match.any_value(), "WebACLArn": Match.any_value()},
    )
    # WAF logs every header: the credentials among them are redacted, and the log group
    # is encrypted with the data key like every other
    _, logging = prod.only("AWS::WAFv2::LoggingConfiguration")
    redacted = {f["SingleHeader"]["Name"] for f in logging["Properties"]["RedactedFields"]}
    assert redacted == {"authorization", "x-api-key", "x-amz-security-token"}
    (waf_log,) = [
        g["Properties"]
        for g in prod.resources("AWS::Logs::LogGroup").values()
        if str(g["Properties"].get("LogGroupName", "")).startswith("aws-waf-logs-")
    ]
    assert "Fn::GetAtt" in waf_log["KmsKeyId"]


ORIGIN = "https://console.example.com"


def _preflights(s: Synthesized) -> dict[str, dict]:
    return {
        k: m
        for k, m in s.resources("AWS::ApiGateway::Method").items()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    }


def test_no_preflight_without_a_cors_origin(stage_synth: Synthesized) -> None:
    assert not _preflights(stage_synth)
    assert not stage_synth.resources("AWS::ApiGateway::GatewayResponse")


@pytest.mark.parametrize("auth", ["iam", "api_key"])
def test_cors_origin_adds_an_unauthenticated_preflight_on_every_resource(synth, auth: str) -> None:
    s = synth("dev", corsAllowOrigin=ORIGIN, apiAuth=auth)
    methods = s.resources("AWS::ApiGateway::Method")
    preflights = _preflights(s)
    # one OPTIONS per resource with methods (/, /{proxy+}, /v1/predict, /v1/predict/batch),
    # next to the authenticated ANY or POST
    resources = {json.dumps(m["Properties"]["ResourceId"]) for m in methods.values()}
    assert {json.dumps(m["Properties"]["ResourceId"]) for m in preflights.values()} == resources
    assert len(preflights) == 4
    for method in preflights.values():
        props = method["Properties"]
        # browsers send the preflight without credentials: it must not need any
        assert props["AuthorizationType"] == "NONE"
        assert props.get("ApiKeyRequired", False) is False
        # answered by API Gateway itself, never by the function
        assert props["Integration"]["Type"] == "MOCK"
        (response,) = props["Integration"]["IntegrationResponses"]
        headers = response["ResponseParameters"]
        assert headers["method.response.header.Access-Control-Allow-Origin"] == f"'{ORIGIN}'"
        allowed = headers["method.response.header.Access-Control-Allow-Headers"]
        for header in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Api-Key"):
            assert header in allowed
        assert "POST" in headers["method.response.header.Access-Control-Allow-Methods"]
    # every other method still requires auth
    for logical_id, method in methods.items():
        if logical_id in preflights:
            continue
        if auth == "iam":
            assert method["Properties"]["AuthorizationType"] == "AWS_IAM", logical_id
        else:
            assert method["Properties"]["ApiKeyRequired"] is True, logical_id
    # API Gateway's own errors (403 on a bad signature, 429, 5XX) are readable by the page
    types = set()
    for response in s.resources("AWS::ApiGateway::GatewayResponse").values():
        props = response["Properties"]
        types.add(props["ResponseType"])
        assert props["ResponseParameters"] == {
            "gatewayresponse.header.Access-Control-Allow-Origin": f"'{ORIGIN}'"
        }
    assert types == {"DEFAULT_4XX", "DEFAULT_5XX"}
    # and the function sends the same origin on its own answers
    predictor = next(
        r
        for r in s.resources("AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == names.API_HANDLER
    )
    environment = predictor["Properties"]["Environment"]["Variables"]
    assert environment[names.ENV_CORS_ALLOW_ORIGIN] == ORIGIN


def test_every_log_group_has_a_retention(dev: Synthesized) -> None:
    groups = dev.resources("AWS::Logs::LogGroup")
    assert groups
    for logical, group in groups.items():
        assert group["Properties"].get("RetentionInDays"), logical
    # API Gateway's execution log group is one of them, created before the stage logs
    names_ = [json.dumps(g["Properties"].get("LogGroupName", "")) for g in groups.values()]
    assert any("API-Gateway-Execution-Logs_" in n for n in names_)
