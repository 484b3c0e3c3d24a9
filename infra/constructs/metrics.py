"""The application's own (EMF) metrics, as CloudWatch metric objects.

The handlers emit them through Powertools in namespace ``names.METRICS_NAMESPACE`` with
two dimensions: ``service`` and ``bundle_version``. Alarms pin a bundle_version (the one
being released); dashboards sum over all versions with a SEARCH expression.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw

from ocsf_detect import names

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)


def app_metric(name: str, bundle_version: str, *, period: Duration = ONE_MINUTE) -> cw.Metric:
    """``name`` (Sum) for one bundle_version."""
    return cw.Metric(
        namespace=names.METRICS_NAMESPACE,
        metric_name=name,
        dimensions_map={
            names.METRIC_DIMENSION_SERVICE: names.SERVICE_NAME,
            names.METRIC_DIMENSION_BUNDLE_VERSION: bundle_version,
        },
        statistic="Sum",
        period=period,
    )


def app_metric_all_versions(name: str, *, period: Duration = FIVE_MINUTES) -> cw.MathExpression:
    """``name`` (Sum) over every bundle_version: what a dashboard shows across a release."""
    schema = (
        f"{{{names.METRICS_NAMESPACE},{names.METRIC_DIMENSION_SERVICE},"
        f"{names.METRIC_DIMENSION_BUNDLE_VERSION}}}"
    )
    seconds = int(period.to_seconds())
    return cw.MathExpression(
        expression=f"SUM(SEARCH('{schema} MetricName=\"{name}\"', 'Sum', {seconds}))",
        label=name,
        period=period,
    )


def anomaly_rate(
    bundle_version: str, *, anomalies: str, events: str, min_events: int
) -> cw.MathExpression:
    """Percent of ``events`` that ``bundle_version`` flagged (``anomalies``), per minute:
    for the stream function Anomalies of Scored, for the prediction API PredictedAnomalies
    of Predictions, so that neither function's traffic moves the other's release alarm.
    It is zero while fewer than ``min_events`` events came in the minute, so a quiet
    function cannot fail a release on two unlucky events.
    """
    return cw.MathExpression(
        expression=(
            f"IF(FILL(events, 0) >= {min_events}, 100 * FILL(anomalies, 0) / FILL(events, 0), 0)"
        ),
        using_metrics={
            "anomalies": app_metric(anomalies, bundle_version),
            "events": app_metric(events, bundle_version),
        },
        label=f"{anomalies} % of {events} ({bundle_version})",
        period=Duration.minutes(1),
    )
