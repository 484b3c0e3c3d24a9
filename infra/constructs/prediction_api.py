"""Prediction API: a REST API (proxy integration, REST proxy v1 events) on the ``live`` alias.

Every method requires SigV4 (IAM) authentication by default. ``ApiConfig.auth = "api_key"``
requires an API key with a usage plan instead: a key identifies a caller for throttling and
quotas, it authenticates nobody (docs/api.md). The one exception exists only when a CORS origin is
configured (``-c corsAllowOrigin``): browsers send the CORS preflight (OPTIONS) without
credentials, so API Gateway answers it itself (a mock integration, no auth, never the
function) with that origin; its 4XX/5XX answers (e.g. a 403 for a bad signature) carry the
origin too, so a browser can read them. Stage throttling, X-Ray, JSON access logs and a
request validator are always on; the two POST routes declare their body models, so API
Gateway refuses a body that is not JSON of the right shape before the function runs. Prod
adds a WAF web ACL with a per-IP rate limit, logging to a log group. An optional resource
policy admits only callers of one AWS Organization or one VPC endpoint. The account-wide
API Gateway CloudWatch role is set only with ``-c manageApiGatewayAccount=true``.
API Gateway caps REST payloads at 10 MB; tighter per-event and per-batch limits are the
handler's (``OCSF_DETECT_MAX_EVENT_BYTES``, ``OCSF_DETECT_MAX_BATCH_EVENTS``).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.constructs.function import DEFAULT_EPHEMERAL_STORAGE_MB, ServiceFunction, retention
from infra.constructs.model_artifacts import FunctionLayers
from infra.constructs.nag import acknowledge, logical_id
from infra.stages import ApiConfig, Architecture
from ocsf_detect import names

API_STAGE = "v1"
CORS_ALLOW_METHODS = ["GET", "POST", "OPTIONS"]
CORS_MAX_AGE = Duration.minutes(10)


# Which routes each kind of caller may invoke (IAM auth): scoring clients score and read
# the model; analysts also judge findings and manage suppression rules.
_SCORING_ROUTES = (
    ("POST", "/v1/predict"),
    ("POST", "/v1/predict/batch"),
    ("GET", "/v1/health"),
    ("GET", "/v1/model"),
    ("GET", "/v1/openapi.json"),
)
CALLER_ROUTES: dict[str, tuple[tuple[str, str], ...]] = {
    "scoring": _SCORING_ROUTES,
    "analyst": (
        *_SCORING_ROUTES,
        ("POST", "/v1/feedback"),
        ("GET", "/v1/suppressions"),
        ("POST", "/v1/suppressions"),
        ("DELETE", "/v1/suppressions/*"),
    ),
}


class PredictionApi(Construct):
    """The prediction function, its alias and the authenticated REST API in front of it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        config: ApiConfig,
        architecture: Architecture,
        layers: FunctionLayers,
        log_retention_days: int,
        log_key: kms.IKey | None = None,
        cors_allow_origin: str | None = None,
        manage_account: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        environment = layers.bundle_environment()
        if cors_allow_origin:
            environment[names.ENV_CORS_ALLOW_ORIGIN] = cors_allow_origin
        if config.snap_start:
            environment[names.ENV_LOAD_BUNDLE_AT_INIT] = "true"
        self.service = ServiceFunction(
            self,
            "Predictor",
            handler=names.API_HANDLER,
            description="ocsf-detect: scores OCSF events sent to the prediction API",
            architecture=architecture,
            memory_mb=config.memory_mb,
            timeout=Duration.seconds(config.timeout_s),
            layers=layers.all_layers,
            environment=environment,
            log_retention_days=log_retention_days,
            log_key=log_key,
            reserved_concurrency=config.reserved_concurrency,
            snap_start=config.snap_start,
        )
        layers.check_bundle_fits("the prediction function", DEFAULT_EPHEMERAL_STORAGE_MB)
        self.function = self.service.function
        layers.grant_bundle_read(self.function)
        self.alias = self.service.live_alias()

        self.access_log = logs.LogGroup(
            self,
            "AccessLog",
            retention=retention(log_retention_days),
            encryption_key=log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        use_iam = config.auth == "iam"
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"ocsf-detect-{stage}",
            description="ocsf-detect prediction API",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Execution and access logs need the account-level CloudWatch role, one per
            # account and region, shared by every REST API there: set by a stack only when
            # asked to (-c manageApiGatewayAccount=true), and kept when that stack goes.
            cloud_watch_role=manage_account,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if manage_account else None,
            policy=_caller_policy(config),
            deploy_options=apigw.StageOptions(
                stage_name=API_STAGE,
                tracing_enabled=True,
                metrics_enabled=True,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,  # bodies are security events: never in logs
                throttling_rate_limit=config.throttle_rate,
                throttling_burst_limit=config.throttle_burst,
                access_log_destination=apigw.LogGroupLogDestination(self.access_log),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=True,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=True,
                ),
            ),
            default_method_options=apigw.MethodOptions(
                authorization_type=apigw.AuthorizationType.IAM
                if use_iam
                else apigw.AuthorizationType.NONE,
                api_key_required=not use_iam,
            ),
        )
        # API Gateway writes execution logs to a group it names itself and would create
        # without a retention; created here first, it keeps the stage's retention.
        self.execution_log = logs.LogGroup(
            self,
            "ExecutionLog",
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{API_STAGE}",
            retention=retention(log_retention_days),
            encryption_key=log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api.deployment_stage.node.add_dependency(self.execution_log)
        # Validates what a method declares: the POST routes' body models (the shape only;
        # the handler's own parsing and limits judge each event), the rest declare none.
        self.validator = self.api.add_request_validator(
            "RequestValidator", validate_request_parameters=True, validate_request_body=True
        )
        integration = apigw.LambdaIntegration(self.alias, proxy=True, allow_test_invoke=False)
        proxy = self.api.root.add_resource("{proxy+}")
        predict = self.api.root.add_resource("v1").add_resource("predict")
        batch = predict.add_resource("batch")
        self.models = {
            "predict": self._model("PredictRequest", PREDICT_SCHEMA),
            "batch": self._model("BatchRequest", BATCH_SCHEMA),
        }
        self.preflight: list[apigw.Method] = []
        for resource in (self.api.root, proxy, predict, batch):
            if resource is predict or resource is batch:
                model = self.models["predict" if resource is predict else "batch"]
                resource.add_method(
                    "POST",
                    integration,
                    request_validator=self.validator,
                    request_models={"application/json": model},
                )
            else:
                resource.add_method("ANY", integration, request_validator=self.validator)
            if cors_allow_origin:
                self.preflight.append(self._add_preflight(resource, cors_allow_origin))
        self.alarms = self._alarms()
        if cors_allow_origin:
            self._add_cors_to_gateway_errors(cors_allow_origin)

        self.caller_policies: dict[str, iam.ManagedPolicy] = {}
        if use_iam:
            self._add_caller_policies()

        self.api_key: apigw.IApiKey | None = None
        if not use_iam:
            self.api_key = self.api.add_api_key("ClientKey", description="ocsf-detect client")
            plan = self.api.add_usage_plan(
                "UsagePlan",
                description="Throttle and daily quota per API key",
                throttle=apigw.ThrottleSettings(
                    rate_limit=config.throttle_rate, burst_limit=config.throttle_burst
                ),
                quota=apigw.QuotaSettings(limit=config.quota_per_day, period=apigw.Period.DAY),
            )
            plan.add_api_key(self.api_key)
            plan.add_api_stage(stage=self.api.deployment_stage)
            CfnOutput(self, "ApiKeyId", value=self.api_key.key_id)
            acknowledge(
                self.api,
                "AwsSolutions-APIG4",
                "Deliberate (ApiConfig.auth=api_key, -c apiAuth=api_key): an API key and its "
                "usage plan identify, throttle and cap callers but authenticate no one "
                "(docs/api.md); limit who can reach the API with -c apiAllowedVpceId. IAM "
                "(SigV4) auth is the default",
            )

        if config.waf:
            self._add_web_acl(config, log_retention_days, log_key)
        else:
            callers = (
                "Callers sign requests with SigV4"
                if config.auth == "iam"
                else "Callers hold an API key (which identifies, not authenticates, them)"
            )
            acknowledge(
                self.api,
                "AwsSolutions-APIG3",
                f"{callers} and the stage is throttled; the WAF web ACL (ApiConfig.waf) is "
                "enabled in prod, not in this stage",
            )
        acknowledge(
            self.api,
            "AwsSolutions-COG4",
            "Callers sign requests with SigV4 (or hold an API key): services, or browser "
            "apps holding IAM credentials, not end users of a Cognito user pool authorizer",
        )
        if manage_account:
            acknowledge(
                self.api,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AmazonAPIGatewayPushToCloudWatchLogs]",
                "API Gateway's account-level logging role needs exactly this AWS-managed "
                "policy to write execution logs (APIG6)",
            )

    def _add_caller_policies(self) -> None:
        """With IAM auth, one managed policy per kind of caller, naming the routes it may
        invoke (``CALLER_ROUTES``): a producer that scores events cannot post verdicts or
        rules, which silence alerts. Attach them to the callers' roles (outputs
        ``ScoringCallerPolicyArn``, ``AnalystCallerPolicyArn``); docs/api.md."""
        for kind, routes in CALLER_ROUTES.items():
            resources = [
                self.api.arn_for_execute_api(method, path, API_STAGE) for method, path in routes
            ]
            policy = iam.ManagedPolicy(
                self,
                f"{kind.capitalize()}CallerPolicy",
                description=f"ocsf-detect prediction API: what a {kind} caller may invoke",
                statements=[
                    iam.PolicyStatement(actions=["execute-api:Invoke"], resources=resources)
                ],
            )
            self.caller_policies[kind] = policy
            CfnOutput(self, f"{kind.capitalize()}CallerPolicyArn", value=policy.managed_policy_arn)
            if any("*" in path for _, path in routes):
                acknowledge(
                    policy,
                    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:execute-api:<AWS::Region>:"
                    f"<AWS::AccountId>:<{logical_id(self.api)}>/{API_STAGE}/DELETE/v1/suppressions/*]",
                    "One route with a path parameter: DELETE /v1/suppressions/{id}, any rule id",
                )

    def _model(self, name: str, schema: apigw.JsonSchema) -> apigw.Model:
        return self.api.add_model(
            name, content_type="application/json", model_name=name, schema=schema
        )

    def _alarms(self) -> list[cw.Alarm]:
        """Client errors (4XX: bad bodies, auth failures, throttling) and throttling alone
        (429, counted from the access log: API Gateway has no metric of its own for it)."""
        minute = Duration.minutes(1)
        throttled = logs.MetricFilter(
            self,
            "ThrottledRequests",
            log_group=self.access_log,
            filter_pattern=logs.FilterPattern.string_value("$.status", "=", "429"),
            metric_namespace=names.METRICS_NAMESPACE,
            metric_name=f"{self.api.rest_api_name}-429",
            metric_value="1",
            default_value=0,
        )
        return [
            cw.Alarm(
                self,
                "ClientErrors",
                alarm_description="Share of API requests answered 4XX (bad input, auth, 429)",
                metric=self.api.deployment_stage.metric_client_error(
                    period=minute, statistic="Average"
                ),
                threshold=0.25,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                self,
                "Throttled",
                alarm_description="API requests throttled (429): callers above the stage limits",
                metric=throttled.metric(period=minute, statistic="Sum"),
                threshold=10,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        ]

    def _add_preflight(self, resource: apigw.IResource, origin: str) -> apigw.Method:
        """OPTIONS on ``resource``, answered by API Gateway with the CORS headers."""
        method = resource.add_cors_preflight(
            allow_origins=[origin],
            allow_methods=CORS_ALLOW_METHODS,
            # SigV4's and the API key's headers, as the function's own CORS answer allows.
            allow_headers=apigw.Cors.DEFAULT_HEADERS,
            max_age=CORS_MAX_AGE,
        )
        # No auth on purpose: browsers send the preflight without credentials, so it can
        # carry neither a signature nor a key; the mock integration returns the CORS headers
        # and nothing else, and never invokes the function. cdk-nag agrees: APIG4 and COG4
        # treat such an OPTIONS method (204 + Access-Control-Allow-*) as not applicable, so
        # there is no finding to acknowledge here (test_compliance checks the CORS shape).
        return method

    def _add_cors_to_gateway_errors(self, origin: str) -> None:
        """API Gateway's own errors (403 bad signature, 413, 429, 5XX) name the origin."""
        headers = {"Access-Control-Allow-Origin": f"'{origin}'"}
        for name, response_type in (
            ("Default4xx", apigw.ResponseType.DEFAULT_4_XX),
            ("Default5xx", apigw.ResponseType.DEFAULT_5_XX),
        ):
            self.api.add_gateway_response(name, type=response_type, response_headers=headers)

    def _add_web_acl(
        self, config: ApiConfig, log_retention_days: int, log_key: kms.IKey | None
    ) -> None:
        def managed(name: str, priority: int) -> wafv2.CfnWebACL.RuleProperty:
            return wafv2.CfnWebACL.RuleProperty(
                name=name,
                priority=priority,
                override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                        vendor_name="AWS", name=name
                    )
                ),
                visibility_config=_visibility(name),
            )

        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility("ocsf-detect-api"),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="rate-limit-per-ip",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            aggregate_key_type="IP", limit=config.waf_rate_limit_per_5min
                        )
                    ),
                    visibility_config=_visibility("rate-limit-per-ip"),
                ),
                # Not the common rule set: its 8 KB body rule would block event batches.
                managed("AWSManagedRulesKnownBadInputsRuleSet", 1),
                managed("AWSManagedRulesAmazonIpReputationList", 2),
            ],
        )
        wafv2.CfnWebACLAssociation(
            self,
            "WebAclAssociation",
            resource_arn=self.api.deployment_stage.stage_arn,
            web_acl_arn=acl.attr_arn,
        )
        # WAF logs only to log groups named aws-waf-logs-*; request bodies are not logged,
        # every header is, so the credentials among them are redacted below.
        self.waf_log = logs.LogGroup(
            self,
            "WafLog",
            log_group_name=f"aws-waf-logs-ocsf-detect-{self.node.addr[:12]}",
            retention=retention(log_retention_days),
            encryption_key=log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        wafv2.CfnLoggingConfiguration(
            self,
            "WafLogging",
            resource_arn=acl.attr_arn,
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=self.waf_log.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            redacted_fields=[
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": h})
                for h in WAF_REDACTED_HEADERS
            ],
        )


WAF_REDACTED_HEADERS = ("authorization", "x-api-key", "x-amz-security-token")
"""Credentials a caller sends as headers: a SigV4 signature with its session token, or an
API key. WAF logs every header of a request it inspects."""

PREDICT_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="PredictRequest",
    description="One OCSF event: a JSON object (the handler judges its fields)",
    type=apigw.JsonSchemaType.OBJECT,
)
BATCH_SCHEMA = apigw.JsonSchema(
    schema=apigw.JsonSchemaVersion.DRAFT4,
    title="BatchRequest",
    description="{events: [...]}, at least one; the handler judges each event on its own",
    type=apigw.JsonSchemaType.OBJECT,
    required=["events"],
    additional_properties=False,
    properties={"events": apigw.JsonSchema(type=apigw.JsonSchemaType.ARRAY, min_items=1)},
)


def _caller_policy(config: ApiConfig) -> iam.PolicyDocument | None:
    """With ``allowed_org_id`` / ``allowed_vpce_id``: deny every caller outside them (IAM
    or API key auth still applies to those inside).

    What the policy *allows* depends on the auth type (API Gateway's "How resource policies
    affect authorization workflow", tables A and B). With no auth (API keys), API Gateway
    needs an explicit Allow, so everyone is allowed and the Denies do the limiting. With
    IAM auth an Allow to ``*`` would authorize every principal of this account, even one
    no IAM policy lets invoke the API (table A: resource-policy Allow suffices in the same
    account); so the Allow is only the cross-account half for the organization's other
    accounts (whose callers still need their own IAM Allow, table B), and this account's
    callers keep needing theirs.
    """
    conditions: list[dict[str, dict[str, str]]] = []
    if config.allowed_org_id:
        conditions.append({"StringNotEquals": {"aws:PrincipalOrgID": config.allowed_org_id}})
    if config.allowed_vpce_id:
        conditions.append({"StringNotEquals": {"aws:SourceVpce": config.allowed_vpce_id}})
    if not conditions:
        return None
    invoke = "execute-api:/*"
    statements: list[iam.PolicyStatement] = []
    if config.auth != "iam":
        statements.append(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()], actions=["execute-api:Invoke"], resources=[invoke]
            )
        )
    elif config.allowed_org_id:
        statements.append(
            iam.PolicyStatement(
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=[invoke],
                conditions={
                    "StringEquals": {"aws:PrincipalOrgID": config.allowed_org_id},
                    "StringNotEquals": {"aws:PrincipalAccount": Aws.ACCOUNT_ID},
                },
            )
        )
    statements += [
        iam.PolicyStatement(
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["execute-api:Invoke"],
            resources=[invoke],
            conditions=condition,
        )
        for condition in conditions
    ]
    return iam.PolicyDocument(statements=statements)


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )
