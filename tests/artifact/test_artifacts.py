"""The packaged functions, started from the synthesized assets under Lambda's python3.12.

A missing import, a file left out of a layer or a wrong handler path fails here: every
function is imported by its ``Handler`` from its own task root and merged /opt, with only
the runtime's boto3 besides, and invoked with the real-shaped events in ``events/``.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from ocsf_detect import names
from ocsf_detect.detector.scorer import Scored
from ocsf_detect.findings import finding_uid
from ocsf_detect_tools.artifact import MODEL_LAYER, lay_out
from ocsf_detect_tools.replay import drain_queue
from tests.artifact.conftest import Stage, function_name
from tests.artifact.lambda_stub import FunctionError, LambdaStub, serve
from tests.conftest import EVENTS_DIR
from tests.unit.test_api_handler import headers_of, is_subset

TOOLS = (
    "ocsf_detect_tools", "cli", "simulate", "training", "build", "config", "specs",
    "evaluation", "benchmark", "demo", "eventio", "registry", "emulator", "runner",
    "localapi", "localcontext", "replay", "ocsf_models", "report", "queues",
)  # fmt: skip
FIRST_SEQUENCE = 49590338271490256608559692538361571095921575989136600000
SHARD = "shardId-000000000000"
HOOK_EVENT = {"DeploymentId": "d-ARTIFACT1", "LifecycleEventHookExecutionId": "exec-artifact"}


def _shared_layer(stage: Stage) -> Path:
    stream = stage.one(names.STREAM_HANDLER).function
    found = [
        Path(layer)
        for layer in stream.layers
        if layer != MODEL_LAYER and (Path(layer) / "python" / "ocsf_detect").is_dir()
    ]
    assert len(found) == 1, found
    return found[0]


def _assert_imports_stay_inside(stage: Stage, run: Any, deployed: Any) -> None:
    allowed = (deployed.layout.task_root, deployed.layout.opt, *stage.allowed_roots)
    outside = run.modules_outside(allowed)
    assert outside == {}, f"imported from outside the function's layout: {outside}"
    stray = {n: f for n, f in run.report["modules"].items() if "site-packages" in f}
    opt_site = str(deployed.layout.opt.resolve())
    assert all(f.startswith(opt_site) for f in stray.values()), stray


def test_shared_layer_holds_only_the_runtime_package(stage: Stage) -> None:
    python = _shared_layer(stage) / "python"
    assert sorted(p.name for p in python.iterdir()) == ["ocsf_detect"]
    package = python / "ocsf_detect"
    shipped = {p.relative_to(package).with_suffix("").as_posix() for p in package.rglob("*.py")}
    tooling = sorted(m for m in shipped if set(m.split("/")) & set(TOOLS))
    assert tooling == [], f"tools in the shared layer: {tooling}"
    for function in stage.assembly.functions:
        assert {p.name for p in function.code.iterdir()} <= {
            "__init__.py", "stream_scoring", "prediction_api", "release_hook",
        }  # fmt: skip


def test_every_function_starts_with_its_layers_alone(stage: Stage, python312: Path) -> None:
    assert len(stage.functions) == 4  # scorer, predictor and their two release hooks
    for deployed in stage.functions.values():
        run = deployed.run([], python312)
        assert run.init_error is None, (deployed.function.handler, run.init_error, run.stderr)
        _assert_imports_stay_inside(stage, run, deployed)
        assert "ocsf_detect_tools" not in run.report["modules"]


def test_stream_function_scores_the_sample_batch_and_publishes_findings(
    stage: Stage, python312: Path, detector: Any, live_traffic: Any
) -> None:
    stream = stage.one(names.STREAM_HANDLER)
    sample = json.loads((EVENTS_DIR / "kinesis" / "batch.json").read_text())
    expected = json.loads((EVENTS_DIR / "kinesis" / "batch.expected.json").read_text())
    # Given a batch of events this bundle flags, in the sample batch's envelope
    outcomes = detector.score_objects(live_traffic.events)
    anomalous = [o.event for o in outcomes if isinstance(o, Scored) and o.is_anomaly][:5]
    assert len(anomalous) == 5
    # each of them twice (two records): an alert group speaks at its second anomaly
    anomalous = anomalous + anomalous
    template = sample["Records"][0]
    flagged = {
        "Records": [
            {
                **template,
                "eventID": f"shardId-000000000000:{i}",
                "kinesis": {
                    **template["kinesis"],
                    "sequenceNumber": str(FIRST_SEQUENCE + i),
                    "data": base64.b64encode(orjson.dumps(event)).decode(),
                },
            }
            for i, event in enumerate(anomalous)
        ]
    }
    producers = json.loads((EVENTS_DIR / "kinesis" / "producers.json").read_text())
    producers_expected = json.loads(
        (EVENTS_DIR / "kinesis" / "producers.expected.json").read_text()
    )
    # When the packaged function takes the sample batch, the producers' records (KPL,
    # gzip, zlib, NDJSON, CloudWatch Logs), then the flagged batch
    run = stream.run([sample, producers, flagged], python312)
    # Then all are fully processed, the poison of both samples is quarantined (3 + 3),
    # findings arrive
    assert run.init_error is None, run.stderr
    assert run.results == [expected, producers_expected, {"batchItemFailures": []}]
    quarantined = drain_queue(stream.env[names.ENV_QUARANTINE_QUEUE_URL])
    assert len(quarantined) == 6
    via_sns = drain_queue(stage.findings_sns_queue)
    via_events = drain_queue(stage.findings_events_queue)
    # grouped in the alert-state table: one message or more per alert group, each naming it
    assert len(via_sns) == len(via_events) >= 1
    groups = {f["unmapped"]["group"]["uid"] for f in via_sns}
    assert 1 <= len(groups) <= len(anomalous)
    assert {f["finding_info"]["uid"] for f in via_sns} == groups
    assert {f["class_uid"] for f in via_sns} == {2004}
    assert {e["detail"]["class_uid"] for e in via_events} == {2004}
    # every flagged event's finding is a message's evidence or archived as withheld
    published = {f["unmapped"].get("event_finding_uid") for f in via_sns} - {None}
    listed = boto3.client("s3").list_objects_v2(
        Bucket=stream.env[names.ENV_QUARANTINE_BUCKET], Prefix=names.WITHHELD_KEY_PREFIX
    )
    withheld = {o["Key"].rsplit("/", 1)[1].removesuffix(".json") for o in listed["Contents"]}
    flagged_uids = {
        finding_uid(shard_id=SHARD, sequence_number=str(FIRST_SEQUENCE + i), event_uid=None)
        for i in range(len(anomalous))
    }
    # (the sample batches' own anomalies may open groups of their own: not asserted here)
    assert len(flagged_uids) == len(anomalous)
    assert flagged_uids <= published | withheld
    assert not published & withheld
    _assert_imports_stay_inside(stage, run, stream)


def test_api_answers_every_sample_event_as_expected(stage: Stage, python312: Path) -> None:
    api = stage.one(names.API_HANDLER)
    # One warm container answers them all; health last, as its expected answer is the
    # ready one (the bundle loads on the first request that needs it)
    cases = sorted(
        (
            p.name.removesuffix(".expected.json")
            for p in (EVENTS_DIR / "api").glob("*.expected.json")
        ),
        key=lambda case: (case == "health", case),
    )
    requests = [json.loads((EVENTS_DIR / "api" / f"{c}.json").read_text()) for c in cases]
    run = api.run(requests, python312)
    assert run.init_error is None, run.stderr
    for case, response in zip(cases, run.results, strict=True):
        expected = json.loads((EVENTS_DIR / "api" / f"{case}.expected.json").read_text())
        body = json.loads(response["body"]) if response.get("body") else None
        assert response["statusCode"] == expected["statusCode"], (case, body)
        for name, value in expected.get("headers", {}).items():
            assert headers_of(response).get(name) == value, (case, name)
        assert is_subset(expected.get("body", {}), body), (case, body)
    _assert_imports_stay_inside(stage, run, api)


@pytest.mark.parametrize("guarded", [names.STREAM_HANDLER, names.API_HANDLER])
def test_release_hook_passes_the_packaged_function(
    stage: Stage, python312: Path, bundle_version: str, guarded: str
) -> None:
    """The hook runs its real adapters against a loopback Lambda/CodeDeploy stand-in whose
    Invoke starts the guarded function's own packaged process (see ``lambda_stub``)."""
    by_name = {function_name(k): d for k, d in stage.functions.items()}

    def invoke_target(target: str, payload: Any) -> Any:
        name = target.rsplit(":function:", maxsplit=1)[-1].split(":", maxsplit=1)[0]
        run = by_name[name].run([payload], python312)
        outcome = run.report["invocations"][0] if run.report.get("invocations") else None
        if run.init_error or outcome is None or "error" in outcome:
            raise FunctionError(run.init_error or (outcome or {}).get("error", {}))
        return outcome["result"]

    guarded_id = stage.one(guarded).function.logical_id
    hooks = [
        d
        for d in stage.functions.values()
        if d.function.handler == names.PRE_TRAFFIC_HANDLER
        and function_name(guarded_id) in d.env[names.ENV_TARGET_FUNCTION_ARN]
    ]
    assert len(hooks) == 1
    with serve(LambdaStub(invoke_target)) as stub:
        run = hooks[0].run(
            [HOOK_EVENT],
            python312,
            AWS_ENDPOINT_URL_LAMBDA=stub.url,
            AWS_ENDPOINT_URL_CODEDEPLOY=stub.url,
        )
    answer = run.results[0]
    assert answer["status"] == "Succeeded", answer
    assert [p for _, p in stub.invocations] == [{names.SELFTEST_PAYLOAD_KEY: True}]
    assert [(r["deploymentId"], r["status"]) for r in stub.reports] == [
        ("d-ARTIFACT1", "Succeeded")
    ]
    assert bundle_version in json.dumps(answer)


def test_a_file_left_out_of_a_layer_or_a_wrong_handler_fails(
    stage: Stage, python312: Path, bundle_archive: Path, tmp_path: Path
) -> None:
    stream = stage.one(names.STREAM_HANDLER)
    # Given the stream function laid out again without the X-Ray SDK in its layers
    broken = lay_out(stream.function, tmp_path / "broken", bundle_archive=bundle_archive)
    shutil.rmtree(broken.opt / "python" / "aws_xray_sdk")
    env = {**stream.env, "LAMBDA_TASK_ROOT": str(broken.task_root)}
    from ocsf_detect_tools.artifact import invoke

    # When it starts, Then the import fails as Lambda reports it
    run = invoke(broken, env, [], python312=python312)
    assert run.init_error is not None
    assert run.init_error["errorType"] == "Runtime.ImportModuleError"
    assert "aws_xray_sdk" in run.init_error["errorMessage"]
    # And a handler path that names no module fails the same way
    run = stream.run([], python312, _HANDLER="stream_scoring.handlers.lambda_handler")
    assert run.init_error is not None
    assert run.init_error["errorType"] == "Runtime.ImportModuleError"


def test_with_snapstart_the_bundle_loads_during_init(stage: Stage, python312: Path) -> None:
    """SnapStart snapshots the environment after init: the bundle must be loaded by then,
    and the after-restore re-seeding registered with the runtime's hooks library."""
    for handler in (names.STREAM_HANDLER, names.API_HANDLER):
        deployed = stage.one(handler)
        lazy = deployed.run([], python312)
        eager = deployed.run([], python312, **{names.ENV_LOAD_BUNDLE_AT_INIT: "true"})
        assert lazy.init_error is None, lazy.stderr
        assert eager.init_error is None, eager.stderr
        assert "hnswlib" in eager.report["modules"]
        assert "snapshot_restore_py" in eager.report["modules"]
        assert "snapshot_restore_py" not in lazy.report["modules"]
        # The bundle loaded during init: the ONNX runtime is imported only by a bundle load
        # (a structural check; init times depend on the machine's load).
        assert "onnxruntime" in eager.report["modules"]
        assert "onnxruntime" not in lazy.report["modules"]
