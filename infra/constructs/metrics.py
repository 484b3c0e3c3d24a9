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


def anomaly_rate(bundle_version: str, *, min_scored: int) -> cw.MathExpression:
    """Percent of events flagged anomalous by ``bundle_version``, per minute.

    Both functions count ``Anomalies``; the stream function counts its events as
    ``Scored`` and the prediction API as ``Predictions``, so the rate is over both. It is
    zero while fewer than ``min_scored`` events were scored in the minute, so a quiet
    stream cannot fail a release on two unlucky events.
    """
    total = "(FILL(scored, 0) + FILL(predictions, 0))"
    return cw.MathExpression(
        expression=f"IF({total} >= {min_scored}, 100 * FILL(anomalies, 0) / {total}, 0)",
        using_metrics={
            "anomalies": app_metric(names.METRIC_ANOMALIES, bundle_version),
            "scored": app_metric(names.METRIC_SCORED, bundle_version),
            "predictions": app_metric(names.METRIC_PREDICTIONS, bundle_version),
        },
        label=f"anomaly rate % ({bundle_version})",
        period=Duration.minutes(1),
    )
