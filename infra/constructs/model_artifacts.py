"""Model artifacts and layers: the registry bucket and the three layers the functions run on.

* ``ModelRegistry``: the versioned bucket ``ocsf-detect publish`` uploads bundles to. Its
  name is derived from the stage, account and region, so it is known before the first
  deploy creates it (and printed as the ``ModelRegistryBucketName`` output). Only the
  registry's publisher role (``ModelPublisherRoleArn``) may write or delete objects in it:
  the bucket policy denies every other principal, administrators included, so a bundle
  cannot change underneath a release. Object Lock (governance mode) is a stage option.
* ``FunctionLayers``: the dependency layer and the shared-library layer (local directories
  built by ``infra.layers``) and the model layer, made *from the published archive in the
  registry* (``Code.from_bucket(bucket, key, object_version)``). With
  ``bundleSource=s3`` there is no model layer: the functions get the archive's
  ``s3://...?versionId=...`` in ``OCSF_DETECT_BUNDLE_S3_URI`` and read access to it.
"""

from __future__ import annotations

from aws_cdk import Annotations, AssetHashType, Aws, CfnOutput, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.budget import SizePart, check_tmp_budget, check_unzipped_budget
from infra.constructs.function import RUNTIME, functions_code_size, lambda_architecture
from infra.constructs.nag import acknowledge, logical_id
from infra.constructs.storage import secure_bucket_props
from infra.layers import BUILD_MARKER, BuiltLayer
from infra.stages import Architecture, ModelSelection
from ocsf_detect import names
from ocsf_detect_tools.registry import archive_key, bundle_dir_key, manifest_key

NONCURRENT_VERSION_DAYS = 90
WRITE_ACTIONS = [
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
]
"""What changes or removes a published object: only the publisher role may."""


def registry_bucket_name(stage: str) -> str:
    """``ocsf-detect-<stage>-models-<account>-<region>`` (tokens resolved at deploy time)."""
    return f"ocsf-detect-{stage}-models-{Aws.ACCOUNT_ID}-{Aws.REGION}"


class ModelRegistry(Construct):
    """Versioned, encrypted, private, access-logged bucket of published bundle archives."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        access_logs: s3.IBucket,
        object_lock_days: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        lock = (
            {
                "object_lock_enabled": True,
                "object_lock_default_retention": s3.ObjectLockRetention.governance(
                    Duration.days(object_lock_days)
                ),
            }
            if object_lock_days
            else {}
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=registry_bucket_name(stage),
            versioned=True,
            **lock,
            lifecycle_rules=[
                # Published versions are never overwritten; noncurrent versions only come
                # from deletions, kept long enough to undo one.
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(NONCURRENT_VERSION_DAYS),
                    noncurrent_versions_to_retain=3,
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads",
                    abort_incomplete_multipart_upload_after=Duration.days(7),
                ),
            ],
            **secure_bucket_props(logs=access_logs, log_prefix="registry/"),
        )
        self.publisher = iam.Role(
            self,
            "PublisherRole",
            assumed_by=iam.AccountRootPrincipal(),
            description=(
                f"ocsf-detect {stage}: publishes bundles to the model registry "
                "(`ocsf-detect publish --role-arn`); the only writer the bucket admits"
            ),
            max_session_duration=Duration.hours(1),
        )
        self.publisher.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject", "s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.bucket.arn_for_objects("*")],
            )
        )
        self.publisher.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket", "s3:ListBucketVersions"],
                resources=[self.bucket.bucket_arn],
            )
        )
        acknowledge(
            self.publisher,
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.bucket)}.Arn>/*]",
            "The publisher writes new bundle versions under keys named at publish time; "
            "it cannot delete or overwrite-protect (no Delete*/Retention actions)",
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyThePublisherWrites",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=WRITE_ACTIONS,
                resources=[self.bucket.arn_for_objects("*")],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": self.publisher.role_arn}},
            )
        )
        CfnOutput(
            scope,
            "ModelPublisherRoleArn",
            value=self.publisher.role_arn,
            description="Role for `ocsf-detect publish --role-arn`: the registry's only writer",
        )

    def archive_uri(self, model: ModelSelection) -> str:
        """``s3://bucket/<prefix>bundles/<v>/bundle.zip[?versionId=...]``."""
        uri = f"s3://{self.bucket.bucket_name}/{archive_key(model.prefix, model.version)}"
        return f"{uri}?versionId={model.object_version}" if model.object_version else uri

    def manifest_uri(self, model: ModelSelection) -> str:
        return f"s3://{self.bucket.bucket_name}/{manifest_key(model.prefix, model.version)}"

    def layer_code(self, model: ModelSelection) -> lambda_.Code:
        return lambda_.Code.from_bucket(
            self.bucket, archive_key(model.prefix, model.version), model.object_version
        )

    def grant_read_bundle(self, grantee: iam.IGrantable, model: ModelSelection) -> None:
        """Read access to one published version's objects, nothing else in the bucket."""
        objects = f"{bundle_dir_key(model.prefix, model.version)}*"
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetObject", "s3:GetObjectVersion"],
            resource_arns=[self.bucket.arn_for_objects(objects)],
        )
        principal = grantee.grant_principal
        if isinstance(principal, Construct):
            acknowledge(
                principal,
                f"AwsSolutions-IAM5[Resource::<{logical_id(self.bucket)}.Arn>/{objects}]",
                "Read-only (GetObject/GetObjectVersion) on the objects of the one bundle "
                "version this stack runs: its archive and manifest",
            )


class FunctionLayers(Construct):
    """The layers of every function, and the environment that tells them where the bundle is."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        registry: ModelRegistry,
        model: ModelSelection,
        dependencies: BuiltLayer,
        shared: BuiltLayer,
        architecture: Architecture,
    ) -> None:
        super().__init__(scope, construct_id)
        parts = [
            SizePart("function code (functions/)", functions_code_size()),
            SizePart(f"dependency layer ({dependencies.key})", dependencies.size_bytes),
            SizePart(f"shared layer ({shared.key})", shared.size_bytes),
        ]
        if model.source == "layer":
            if model.unzipped_bytes is None:
                Annotations.of(self).add_warning_v2(
                    "ocsf-detect:model-size-unknown",
                    "the model layer's size is not known, so the 250 MB budget counts the "
                    "code and the other layers only; pass -c modelUnzippedBytes=<the bundle's "
                    "size in bytes> to count it",
                )
            else:
                parts.append(
                    SizePart(f"model layer (bundle {model.version})", model.unzipped_bytes)
                )
        check_unzipped_budget(parts)
        self.registry = registry
        self.model = model
        self.size_parts = tuple(parts)
        self.code_size_bytes = sum(p.size_bytes for p in parts)
        arch = [lambda_architecture(architecture)]
        self.dependencies = lambda_.LayerVersion(
            self,
            "Dependencies",
            code=lambda_.Code.from_asset(
                str(dependencies.path),
                asset_hash=f"deps-{dependencies.key}",
                asset_hash_type=AssetHashType.CUSTOM,
                exclude=[BUILD_MARKER],
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=arch,
            description=f"ocsf-detect runtime wheels ({architecture}, {dependencies.key})",
        )
        self.shared = lambda_.LayerVersion(
            self,
            "SharedLibrary",
            code=lambda_.Code.from_asset(
                str(shared.path),
                asset_hash=f"shared-{shared.key}",
                asset_hash_type=AssetHashType.CUSTOM,
                exclude=[BUILD_MARKER],
            ),
            compatible_runtimes=[RUNTIME],
            compatible_architectures=arch,
            description=f"ocsf_detect library ({shared.key})",
        )
        self.bundle: lambda_.LayerVersion | None = None
        if model.source == "layer":
            self.bundle = lambda_.LayerVersion(
                self,
                "Model",
                code=registry.layer_code(model),
                compatible_runtimes=[RUNTIME],
                description=f"ocsf-detect bundle {model.version} (unpacks at /opt/bundle)",
            )

    @property
    def code_layers(self) -> list[lambda_.ILayerVersion]:
        """Dependencies + shared library: what every function needs."""
        return [self.dependencies, self.shared]

    @property
    def all_layers(self) -> list[lambda_.ILayerVersion]:
        """``code_layers`` plus the model layer when the bundle ships as a layer."""
        return [*self.code_layers, *([self.bundle] if self.bundle else [])]

    def _expected(self) -> dict[str, str]:
        env = {names.ENV_EXPECTED_BUNDLE_VERSION: self.model.version}
        if self.model.manifest_sha256:
            env[names.ENV_EXPECTED_MANIFEST_SHA256] = self.model.manifest_sha256
        return env

    def bundle_environment(self) -> dict[str, str]:
        """Where a scoring function finds its bundle, and which one it must be."""
        env = self._expected()
        if self.bundle is not None:
            env[names.ENV_BUNDLE_PATH] = names.DEFAULT_BUNDLE_PATH
        else:
            env[names.ENV_BUNDLE_S3_URI] = self.registry.archive_uri(self.model)
        return env

    def manifest_environment(self) -> dict[str, str]:
        """Where the release hook reads the manifest (the model layer, or S3), and which
        manifest it must be."""
        env = self._expected()
        if self.bundle is not None:
            env[names.ENV_BUNDLE_PATH] = names.DEFAULT_BUNDLE_PATH
        else:
            env[names.ENV_MANIFEST_S3_URI] = self.registry.manifest_uri(self.model)
        return env

    def check_bundle_fits(self, function: str, ephemeral_storage_mb: int) -> None:
        """With bundleSource=s3 the bundle goes to /tmp: the archive and its unpacked copy
        (the archive is deleted once unpacked) must fit ``function``'s ephemeral storage."""
        if self.bundle is None and self.model.unzipped_bytes is not None:
            check_tmp_budget(function, self.model.unzipped_bytes, ephemeral_storage_mb)

    def grant_bundle_read(self, grantee: iam.IGrantable) -> None:
        """Only with bundleSource=s3: the function downloads the archive itself."""
        if self.bundle is None:
            self.registry.grant_read_bundle(grantee, self.model)
