"""The feedback bucket: analysts' verdicts and the overlay of judged-benign embeddings
(``ocsf_detect.feedback``), under ``names.FEEDBACK_KEY_PREFIX``.

The prediction API writes verdicts and overlay vectors (POST /v1/feedback) and reads the
overlay; the stream function only lists and reads the overlay. ``ocsf-detect train
--feedback s3://<FeedbackBucketName>`` reads the verdicts with the operator's own
credentials.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.nag import acknowledge, logical_id
from infra.constructs.storage import secure_bucket_props
from ocsf_detect import names

OVERLAY_PREFIX = f"{names.FEEDBACK_KEY_PREFIX}overlay/"
FEEDBACK_OBJECTS = f"{names.FEEDBACK_KEY_PREFIX}*"
OVERLAY_OBJECTS = f"{OVERLAY_PREFIX}*"


class FeedbackStore(Construct):
    """An encrypted, private, versioned bucket of verdicts and overlay vectors."""

    def __init__(
        self, scope: Construct, construct_id: str, *, access_logs: s3.IBucket, retain: bool
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            # Verdicts are labels for training and evaluation: a later verdict replaces an
            # object, versioning keeps the earlier one.
            versioned=True,
            **secure_bucket_props(logs=access_logs, log_prefix="feedback/", retain=retain),
        )

    def _list(self, fn: lambda_.IFunction, prefix: str) -> None:
        iam.Grant.add_to_principal(
            grantee=fn,
            actions=["s3:ListBucket"],
            resource_arns=[self.bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*"]}},
        )

    def attach_scorer(self, fn: lambda_.Function) -> None:
        """The stream function reads the overlay: list and get under its prefix only."""
        fn.add_environment(names.ENV_FEEDBACK_BUCKET, self.bucket.bucket_name)
        self._list(fn, OVERLAY_PREFIX)
        iam.Grant.add_to_principal(
            grantee=fn,
            actions=["s3:GetObject"],
            resource_arns=[self.bucket.arn_for_objects(OVERLAY_OBJECTS)],
        )
        acknowledge(
            fn.role or fn,
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.bucket)}.Arn>/{OVERLAY_OBJECTS}]",
            "Read-only on the feedback overlay's objects: one per judged-benign finding, "
            "named by the finding's uid at run time",
        )

    def attach_api(self, fn: lambda_.Function) -> None:
        """The API records verdicts and overlay vectors and reads the overlay back."""
        fn.add_environment(names.ENV_FEEDBACK_BUCKET, self.bucket.bucket_name)
        self._list(fn, OVERLAY_PREFIX)
        iam.Grant.add_to_principal(
            grantee=fn,
            actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            resource_arns=[self.bucket.arn_for_objects(FEEDBACK_OBJECTS)],
        )
        acknowledge(
            fn.role or fn,
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.bucket)}.Arn>/{FEEDBACK_OBJECTS}]",
            "Verdicts and overlay vectors: one object per finding, named by the finding's "
            "uid at run time, under the feedback prefix only (the bucket holds nothing else)",
        )
