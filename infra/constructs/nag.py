"""Acknowledging cdk-nag findings: every acknowledgement carries its reason in code.

cdk-nag v3 reads acknowledgements through CDK's ``Validations`` API, and each finding of
a multi-finding rule (``AwsSolutions-IAM5[Action::...]``) is acknowledged on its own.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from constructs import IConstruct

KMS_GRANT_REASON = (
    "CDK's grant on the stage's one data key (scoped to that key's ARN): SQS and SNS "
    "encrypt and decrypt with generated data keys, whose actions only exist as wildcards"
)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding (``AwsSolutions-IAM5[Resource::*]``) on ``scope``.

    The acknowledgement covers ``scope`` and everything under it; keep scopes small.
    """
    Validations.of(scope).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_kms_grant(scope: IConstruct) -> None:
    """The two action wildcards CDK's KMS encrypt/decrypt grants always contain."""
    for action in ("kms:GenerateDataKey*", "kms:ReEncrypt*"):
        acknowledge(scope, f"AwsSolutions-IAM5[Action::{action}]", KMS_GRANT_REASON)


def logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical ID of ``construct``'s main resource, as cdk-nag prints it."""
    child = construct.node.default_child
    if not isinstance(child, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return str(Stack.of(construct).resolve(child.logical_id))
