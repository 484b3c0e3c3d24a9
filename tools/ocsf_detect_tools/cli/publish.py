"""``ocsf-detect publish``: upload a trained bundle to the model registry bucket.

Prints the bundle_version, its S3 object version, its manifest's sha256 and the exact
``cdk deploy`` line that releases it; ``--json`` prints the same facts as one JSON object
for scripts.

The registry bucket admits writes from one principal only: the stack's publisher role
(output ``ModelPublisherRoleArn``). ``--role-arn`` assumes it for the upload (the caller's
credentials need ``sts:AssumeRole`` on it); without it, the current credentials must
already be that role's session.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from ocsf_detect import names
from ocsf_detect.detector.archive import ArchiveError
from ocsf_detect_tools.cli import CommandError
from ocsf_detect_tools.registry import ModelRegistry, PublishedBundle, RegistryError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="publish a bundle to the model registry bucket",
        description=(
            "Archive a bundle directory and upload it (with a copy of its manifest) to "
            "s3://BUCKET/[PREFIX]bundles/<bundle_version>/. A published version is immutable: "
            "publishing the same bundle again changes nothing, a different bundle with the "
            "same bundle_version is refused. The bucket admits writes only from the "
            "stack's publisher role (output ModelPublisherRoleArn): pass it as --role-arn "
            "to assume it for the upload."
        ),
    )
    parser.add_argument(
        "--bundle", required=True, type=Path, help="bundle directory (manifest.json inside)"
    )
    parser.add_argument(
        "--bucket",
        required=True,
        help="registry bucket (the stack's ModelRegistryBucketName output)",
    )
    parser.add_argument("--prefix", default="", help="key prefix inside the bucket (default: none)")
    parser.add_argument(
        "--stage",
        default="dev",
        choices=names.STAGE_NAMES,
        help="stage to name in the printed cdk deploy line (default: dev)",
    )
    parser.add_argument(
        "--role-arn",
        help="assume this role for the upload (the stack's ModelPublisherRoleArn output)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def publisher_client(role_arn: str) -> Any:
    """An S3 client on a one-hour session of ``role_arn``."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        credentials = boto3.client("sts").assume_role(
            RoleArn=role_arn, RoleSessionName="ocsf-detect-publish", DurationSeconds=3600
        )["Credentials"]
    except (BotoCoreError, ClientError) as exc:
        raise CommandError(f"cannot assume --role-arn {role_arn}: {exc}") from exc
    return boto3.client(
        "s3",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def deploy_command(
    bundle: PublishedBundle, *, stage: str, prefix: str = "", unzipped_bytes: int | None = None
) -> str:
    """The ``cdk deploy`` line that releases ``bundle`` to ``stage``; with ``unzipped_bytes``
    (the bundle directory's size) synth counts the model layer in Lambda's 250 MB budget.

    >>> deploy_command(PublishedBundle("1.0.0+ab", "b", "bundles/1.0.0+ab/bundle.zip",
    ...                                "v1", 10, "", None), stage="prod")
    'npx cdk deploy -c stage=prod -c modelVersion=1.0.0+ab -c modelObjectVersion=v1'
    """
    parts = [
        "npx",
        "cdk",
        "deploy",
        "-c",
        f"stage={stage}",
        "-c",
        f"modelVersion={bundle.bundle_version}",
    ]
    if bundle.object_version:
        parts += ["-c", f"modelObjectVersion={bundle.object_version}"]
    if bundle.manifest_sha256:
        parts += ["-c", f"modelManifestSha256={bundle.manifest_sha256}"]
    if prefix.strip("/"):
        parts += ["-c", f"modelPrefix={prefix}"]
    if unzipped_bytes is not None:
        parts += ["-c", f"modelUnzippedBytes={unzipped_bytes}"]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    try:
        s3 = publisher_client(args.role_arn) if args.role_arn else None
        registry = ModelRegistry(args.bucket, args.prefix, s3=s3)
        result = registry.publish(args.bundle)
    except (RegistryError, ArchiveError) as exc:
        raise CommandError(str(exc)) from exc
    bundle = result.bundle
    unzipped = sum(p.stat().st_size for p in Path(args.bundle).rglob("*") if p.is_file())
    command = deploy_command(bundle, stage=args.stage, prefix=args.prefix, unzipped_bytes=unzipped)
    if args.json:
        print(
            json.dumps(
                {
                    "bundle_version": bundle.bundle_version,
                    "s3_uri": bundle.s3_uri,
                    "object_version": bundle.object_version,
                    "manifest_sha256": bundle.manifest_sha256,
                    "created": result.created,
                    "deploy_command": command,
                }
            )
        )
        return 0
    if result.created:
        print(f"published bundle {bundle.bundle_version} ({bundle.size:,} bytes)")
    else:
        print(
            f"bundle {bundle.bundle_version} is already published with the same manifest; "
            "nothing uploaded"
        )
    print(f"  archive:        {bundle.s3_uri}")
    print(f"  object version: {bundle.object_version or '(none: the bucket is not versioned)'}")
    print(f"  manifest sha256: {bundle.manifest_sha256}")
    print("release it with:")
    print(f"  {command}")
    return 0
