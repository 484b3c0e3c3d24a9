"""CodeDeploy pre-traffic hook for the stream-scoring and prediction functions.

CodeDeploy invokes it with ``{"DeploymentId": ..., "LifecycleEventHookExecutionId": ...}``
before shifting any traffic to the new version. It invokes that version (its ARN comes
from ``OCSF_DETECT_TARGET_FUNCTION_ARN``) with the self-test payload, compares the scores
with the golden scores of the bundle's manifest, and reports Succeeded or Failed; Failed
stops the deployment and CodeDeploy leaves (or puts back) the alias on the old version.
Invoked without those two keys (by hand), it only runs the check and returns the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocsf_detect import names
from release_hook.adapters import HookAdapters, InvocationError, get_adapters
from release_hook.golden import (
    ReleaseCheckError,
    Tolerance,
    Verdict,
    compare,
    golden_from_manifest,
    selftest_from_response,
)
from release_hook.settings import HookSettings, get_settings

logger = Logger(service=names.SERVICE_NAME)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, settings=get_settings(), adapters=get_adapters())


def handle(
    event: Mapping[str, Any], *, settings: HookSettings, adapters: HookAdapters
) -> dict[str, Any]:
    """Run the check, report it when CodeDeploy asked, and return the verdict."""
    verdict = check_release(settings, adapters)
    log = logger.info if verdict.passed else logger.error
    log(
        "release check",
        extra={
            "status": verdict.status,
            "reason": verdict.reason,
            "target": settings.target_function_arn,
            "mismatches": len(verdict.mismatches),
        },
    )
    deployment_id = event.get("DeploymentId")
    execution_id = event.get("LifecycleEventHookExecutionId")
    if isinstance(deployment_id, str) and isinstance(execution_id, str):
        adapters.deployments.report(deployment_id, execution_id, verdict.status)
    return {"status": verdict.status, "reason": verdict.reason}


def check_release(settings: HookSettings, adapters: HookAdapters) -> Verdict:
    """Self-test the candidate against the manifest; every failure becomes a Failed verdict."""
    try:
        expected = golden_from_manifest(adapters.manifest.load())
        answer = adapters.functions.invoke(
            settings.target_function_arn, {names.SELFTEST_PAYLOAD_KEY: True}
        )
        actual = selftest_from_response(answer)
    except (ReleaseCheckError, InvocationError) as exc:
        return Verdict.failed(str(exc))
    except Exception:
        # Never leave CodeDeploy waiting for an hour on a bug here: fail the release.
        logger.exception("release check crashed")
        return Verdict.failed("the release check crashed; see the hook's logs")
    tolerance = Tolerance(absolute=settings.abs_tolerance, relative=settings.rel_tolerance)
    return compare(expected, actual, tolerance, release_version=settings.expected_bundle_version)
