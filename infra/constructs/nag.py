"""Acknowledging cdk-nag findings: every acknowledgement carries its reason in code.

cdk-nag v3 reads acknowledgements through CDK's ``Validations`` API, and each finding of
a multi-finding rule (``AwsSolutions-IAM5[Action::...]``) is acknowledged on its own.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct

KMS_GRANT_REASON = (
    "CDK's sns:Publish grant on the KMS-encrypted findings topic adds kms:Decrypt and "
    "kms:GenerateDataKey* on the stage's one data key (scoped to that key's ARN): SNS "
    "generates a data key per message under the publisher's identity"
)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (``AwsSolutions-IAM5[Resource::*]``) on ``scope``.

    The acknowledgement covers ``scope`` and everything under it; keep scopes small.
    """
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_kms_grant(scope: IConstruct) -> None:
    """The one KMS action wildcard left on a role that publishes to an encrypted topic."""
    acknowledge(scope, "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]", KMS_GRANT_REASON)


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical ID of ``construct``'s main resource, as cdk-nag prints it."""
    child = construct.node.default_child
    if not isinstance(child, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return str(Stack.of(construct).resolve(child.logical_id))
