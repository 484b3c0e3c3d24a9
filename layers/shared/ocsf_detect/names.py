"""Names shared by the library, the functions and the infrastructure.

Environment variables, metric names, event sources and aliases are defined once here and
imported everywhere else, so the CDK app and the handlers cannot drift apart.
"""

from __future__ import annotations

from typing import Final

# --- Environment variables read by the functions' settings models ---------------------
ENV_BUNDLE_PATH: Final = "OCSF_DETECT_BUNDLE_PATH"
"""Directory holding an unpacked bundle (the model layer mounts it under /opt)."""
ENV_BUNDLE_S3_URI: Final = "OCSF_DETECT_BUNDLE_S3_URI"
"""s3://bucket/key[?versionId=...] of a bundle archive, for bundles too large for a layer."""
ENV_ALERT_TOPIC_ARN: Final = "OCSF_DETECT_ALERT_TOPIC_ARN"
ENV_EVENT_BUS_NAME: Final = "OCSF_DETECT_EVENT_BUS_NAME"
ENV_QUARANTINE_QUEUE_URL: Final = "OCSF_DETECT_QUARANTINE_QUEUE_URL"
ENV_QUARANTINE_BUCKET: Final = "OCSF_DETECT_QUARANTINE_BUCKET"
ENV_PUBLISH_MAX_ATTEMPTS: Final = "OCSF_DETECT_PUBLISH_MAX_ATTEMPTS"
ENV_MAX_EVENT_BYTES: Final = "OCSF_DETECT_MAX_EVENT_BYTES"
ENV_MAX_BATCH_EVENTS: Final = "OCSF_DETECT_MAX_BATCH_EVENTS"
ENV_MAX_DECOMPRESSED_BYTES: Final = "OCSF_DETECT_MAX_DECOMPRESSED_BYTES"
ENV_MAX_EVENTS_PER_RECORD: Final = "OCSF_DETECT_MAX_EVENTS_PER_RECORD"
ENV_MAX_BATCH_BYTES: Final = "OCSF_DETECT_MAX_BATCH_BYTES"
ENV_DEADLINE_RESERVE_MS: Final = "OCSF_DETECT_DEADLINE_RESERVE_MS"
ENV_CORS_ALLOW_ORIGIN: Final = "OCSF_DETECT_CORS_ALLOW_ORIGIN"
ENV_EXPECTED_BUNDLE_VERSION: Final = "OCSF_DETECT_EXPECTED_BUNDLE_VERSION"
# sha256 of the released bundle's manifest.json (which lists every file's sha256): the
# bundle a function loads must hash to it, file by file, or it is refused.
ENV_EXPECTED_MANIFEST_SHA256: Final = "OCSF_DETECT_EXPECTED_MANIFEST_SHA256"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
ENV_LOAD_BUNDLE_AT_INIT: Final = "OCSF_DETECT_LOAD_BUNDLE_AT_INIT"
"""true: the scoring functions load the bundle during init (set with SnapStart, whose
snapshot is taken after init, so a restored environment starts with the bundle loaded)."""

DEFAULT_BUNDLE_PATH: Final = "/opt/bundle"
"""Where the model layer's archive unpacks inside a Lambda execution environment."""

# --- Bundle versions (semver + content hash; also S3 keys and layer names) -------------
BUNDLE_VERSION_PATTERN: Final = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,127}$"
"""A safe bundle_version: letters, digits and . + _ - (e.g. 1.0.0+3f2a9c1b7e4d)."""

# --- Deployment stages (infra/stages.py configures each) ------------------------------
STAGE_NAMES: Final = ("dev", "staging", "prod")

# --- Quarantine bucket -----------------------------------------------------------------
QUARANTINE_KEY_PREFIX: Final = "quarantine/"
"""Every object the stream function writes to the quarantine bucket is under this prefix;
its IAM grant is s3:PutObject on exactly these keys."""

# --- Powertools -----------------------------------------------------------------------
SERVICE_NAME: Final = "ocsf-detect"
METRICS_NAMESPACE: Final = "OcsfDetect"

# Metric names (EMF), used by the handlers and by the dashboards and alarms.
METRIC_RECORDS_IN: Final = "RecordsIn"  # events, after unpacking (== Scored + Rejected + ...)
METRIC_KINESIS_RECORDS: Final = "KinesisRecords"  # Kinesis records, before unpacking
METRIC_CONTROL_MESSAGES: Final = "ControlMessages"  # CloudWatch Logs, dropped
METRIC_SCORED: Final = "Scored"
METRIC_ANOMALIES: Final = "Anomalies"  # the stream function's, among METRIC_SCORED
METRIC_PREDICTED_ANOMALIES: Final = "PredictedAnomalies"  # the API's, among METRIC_PREDICTIONS
METRIC_REJECTED: Final = "Rejected"
METRIC_UNSUPPORTED: Final = "Unsupported"
METRIC_FAILED: Final = "Failed"
METRIC_RECORDS_DEFERRED: Final = "RecordsDeferred"  # left unread for the next invocation
METRIC_QUARANTINED: Final = "Quarantined"
METRIC_ALERTS_PUBLISHED: Final = "AlertsPublished"
METRIC_ALERTS_QUARANTINED: Final = "AlertsQuarantined"  # refused for good by a channel
METRIC_ALERTS_RECHECKED: Final = "AlertsRechecked"  # confirmed by exact search
METRIC_ALERTS_UNCHECKED: Final = "AlertsUnchecked"  # past the batch's re-check limit
METRIC_PREDICTIONS: Final = "Predictions"

# --- Alert delivery -------------------------------------------------------------------
EVENTBRIDGE_SOURCE: Final = "ocsf-detect"
EVENTBRIDGE_DETAIL_TYPE: Final = "OCSF Detection Finding"
SNS_ATTR_SEVERITY: Final = "severity"
SNS_ATTR_SEVERITY_ID: Final = "severity_id"
SNS_ATTR_CLASS_UID: Final = "source_class_uid"
SNS_ATTR_BUNDLE_VERSION: Final = "bundle_version"

# --- Releases -------------------------------------------------------------------------
LIVE_ALIAS: Final = "live"

# --- Function entry points (relative to the functions/ asset) -------------------------
STREAM_HANDLER: Final = "stream_scoring.handler.lambda_handler"
API_HANDLER: Final = "prediction_api.handler.lambda_handler"
PRE_TRAFFIC_HANDLER: Final = "release_hook.handler.lambda_handler"

# --- Metric dimensions (the anomaly-rate release alarm selects the new bundle by these) --
METRIC_DIMENSION_SERVICE: Final = "service"
"""Powertools' default dimension; its value is SERVICE_NAME."""
METRIC_DIMENSION_BUNDLE_VERSION: Final = "bundle_version"
"""Second dimension of every EMF metric: the bundle_version the function has loaded."""

# --- Release checks (pre-traffic hook) --------------------------------------------------
SELFTEST_PAYLOAD_KEY: Final = "ocsf_detect_selftest"
"""Direct invocation with {SELFTEST_PAYLOAD_KEY: true} returns the golden events' scores."""
ENV_TARGET_FUNCTION_ARN: Final = "OCSF_DETECT_TARGET_FUNCTION_ARN"
"""Qualified ARN (with version) of the function version the pre-traffic hook checks."""
ENV_MANIFEST_S3_URI: Final = "OCSF_DETECT_MANIFEST_S3_URI"
"""s3://bucket/key[?versionId=...] of a published manifest.json (bundleSource=s3)."""
ENV_SELFTEST_ABS_TOLERANCE: Final = "OCSF_DETECT_SELFTEST_ABS_TOLERANCE"
ENV_SELFTEST_REL_TOLERANCE: Final = "OCSF_DETECT_SELFTEST_REL_TOLERANCE"

# --- Model registry layout (s3://<bucket>/<prefix>bundles/<bundle_version>/...) ----------
REGISTRY_BUNDLES_DIR: Final = "bundles"
REGISTRY_ARCHIVE_NAME: Final = "bundle.zip"
REGISTRY_MANIFEST_NAME: Final = "manifest.json"
REGISTRY_META_MANIFEST_SHA256: Final = "manifest-sha256"
"""S3 user metadata on both objects: sha256 (hex) of the published manifest.json."""

# --- Analyst feedback (verdicts and the overlay of judged-benign embeddings) -------------
ENV_FEEDBACK_BUCKET: Final = "OCSF_DETECT_FEEDBACK_BUCKET"
"""Bucket of verdicts and overlay vectors (``ocsf_detect.feedback``); unset: no feedback."""
ENV_FEEDBACK_REFRESH_S: Final = "OCSF_DETECT_FEEDBACK_REFRESH_S"
"""Seconds between two reads of the overlay by a function (default 60)."""
FEEDBACK_KEY_PREFIX: Final = "feedback/"
"""Every feedback object is under this prefix; the functions' grants name exactly it."""
METRIC_FEEDBACK_SILENCED: Final = "FeedbackSilenced"  # would have alerted; a verdict said benign
METRIC_FEEDBACK_VERDICTS: Final = "FeedbackVerdicts"  # verdicts the API recorded
METRIC_OVERLAY_VECTORS: Final = "OverlayVectors"  # judged-benign vectors the scorer searches

# --- Alert groups and suppression rules (the alert-state DynamoDB table) ---------------
ENV_ALERT_TABLE_NAME: Final = "OCSF_DETECT_ALERT_TABLE_NAME"
"""The alert-state table; unset: no grouping, one finding per anomaly, no suppression."""
ENV_GROUP_WINDOW_S: Final = "OCSF_DETECT_GROUP_WINDOW_S"
ENV_GROUP_UPDATE_INTERVAL_S: Final = "OCSF_DETECT_GROUP_UPDATE_INTERVAL_S"
ENV_GROUP_KEYS: Final = "OCSF_DETECT_GROUP_KEYS"
"""JSON object: class_uid -> list of event fields (dotted) that name the entity."""
ENV_GROUP_NOTIFY_MIN_SEVERITY: Final = "OCSF_DETECT_GROUP_NOTIFY_MIN_SEVERITY_ID"
ENV_GROUP_NOTIFY_MIN_COUNT: Final = "OCSF_DETECT_GROUP_NOTIFY_MIN_COUNT"
ENV_SUPPRESSION_CACHE_S: Final = "OCSF_DETECT_SUPPRESSION_CACHE_S"
ALERT_TABLE_OPEN_INDEX: Final = "open-groups"
"""Sparse index of the groups still open (partition open_pk, sort window_end)."""
SUPPRESSED_KEY_PREFIX: Final = "suppressed/"
"""Suppressed findings are archived in the quarantine bucket under this prefix."""
WITHHELD_KEY_PREFIX: Final = "withheld/"
"""Findings of anomalies counted into a group without a message of their own (a quiet
group's, or between a group's updates) are archived in the quarantine bucket here."""
CLOSE_GROUPS_PAYLOAD_KEY: Final = "ocsf_detect_close_groups"
"""Direct (scheduled) invocation with {CLOSE_GROUPS_PAYLOAD_KEY: true} closes the groups
whose window is over by the clock, and publishes nothing else."""
METRIC_GROUPS_OPENED: Final = "AlertGroupsOpened"
METRIC_GROUPS_CLOSED: Final = "AlertGroupsClosed"
METRIC_FINDINGS_WITHHELD: Final = "FindingsWithheld"  # counted into a group, no message: archived
METRIC_SUPPRESSED: Final = "Suppressed"  # anomalies a suppression rule matched
