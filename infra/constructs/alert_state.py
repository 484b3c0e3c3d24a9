"""The alert-state table: alert groups, per-anomaly markers and suppression rules.

One DynamoDB table (on-demand, encrypted with the stage's data key, point-in-time
recovery, TTL on ``expires_at``) with a sparse index of the groups still open
(``ocsf_detect.alertstate`` describes the items). The grants are the narrowest the code
needs: the scorer reads and writes groups and markers (GetItem; PutItem for a marker,
UpdateItem for a group, which is also how a TransactWriteItems of the two is authorized),
lists the rules and the open groups (Query); the API lists, adds and deletes rules, and
only in the rules' partition (``dynamodb:LeadingKeys``). Neither may Scan or DeleteItem a
group. An integration test records the calls the scorer's code makes against the
emulator and checks that these actions cover them.

A schedule invokes the scorer's ``live`` alias every few minutes with
``{"ocsf_detect_close_groups": true}``: groups whose window is over are closed (with
a last update when they spoke and counted since) even when no batch arrives to close them.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from ocsf_detect import names
from ocsf_detect.alertstate import RULES_PK

TTL_ATTRIBUTE = "expires_at"
SCORER_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem")
API_ACTIONS = ("dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query")
KEY_ACTIONS = ("kms:Decrypt", "kms:DescribeKey")
"""What a caller of a table encrypted with a customer-managed key needs on the key (CDK's
read grant): DynamoDB encrypts items with the table key it holds and decrypts that key with
the caller's kms:Decrypt; items are never encrypted with the KMS key itself."""


class AlertState(Construct):
    """The table, its grants and the schedule that closes groups."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        retain: bool = False,
        close_every_minutes: int = 5,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = key
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute=TTL_ATTRIBUTE,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        self.table.add_global_secondary_index(
            index_name=names.ALERT_TABLE_OPEN_INDEX,
            partition_key=dynamodb.Attribute(name="open_pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="window_end", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        self.close_every = Duration.minutes(close_every_minutes)

    @property
    def index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{names.ALERT_TABLE_OPEN_INDEX}"

    def grant_scorer(self, grantee: iam.IGrantable) -> None:
        """Groups, markers, the open-groups index and the rules (read)."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(SCORER_ACTIONS),
            resource_arns=[self.table.table_arn, self.index_arn],
        )
        self.key.grant(grantee, *KEY_ACTIONS)

    def grant_rules(self, grantee: iam.IGrantable) -> None:
        """The suppression rules' partition only."""
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(API_ACTIONS),
                resources=[self.table.table_arn],
                conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [RULES_PK]}},
            )
        )
        self.key.grant(grantee, *KEY_ACTIONS)

    def close_groups_on_schedule(self, alias: lambda_.IFunction) -> events.Rule:
        """Invoke the scorer's alias with the close-groups payload every few minutes."""
        return events.Rule(
            self,
            "CloseGroups",
            description="ocsf-detect: close the alert groups whose window is over",
            schedule=events.Schedule.rate(self.close_every),
            targets=[
                targets.LambdaFunction(
                    alias,
                    event=events.RuleTargetInput.from_object(
                        {names.CLOSE_GROUPS_PAYLOAD_KEY: True}
                    ),
                    retry_attempts=0,  # the next schedule is the retry
                )
            ],
        )
