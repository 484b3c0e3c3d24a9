"""The functions' Powertools ``Metrics``, silent when metrics are disabled.

With ``POWERTOOLS_METRICS_DISABLED`` (or ``POWERTOOLS_DEV``), Powertools skips the flush
at the end of an invocation but also keeps the values: they pile up in the class-level
metric set over invocations until one metric holds 100 values, and ``add_metric`` then
prints an EMF document anyway (a local server or a long test run prints stray metrics).
Here the set is emptied after every flush while metrics are disabled; enabled, nothing
changes.

    metrics = service_metrics()

    @metrics.log_metrics
    def lambda_handler(event, context): ...
"""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)

from ocsf_detect import names


class _EmfProvider(AmazonCloudWatchEMFProvider):
    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        super().flush_metrics(raise_on_empty_metrics=raise_on_empty_metrics)
        if is_metrics_disabled():
            self.clear_metrics()  # what the enabled flush does after printing


def service_metrics() -> Metrics:
    """``Metrics`` in this service's namespace, sharing Powertools' class-level sets (so
    every ``Metrics()`` in the process still adds to the same document)."""
    metrics = Metrics(namespace=names.METRICS_NAMESPACE, service=names.SERVICE_NAME)
    metrics.provider = _EmfProvider(
        namespace=names.METRICS_NAMESPACE,
        service=names.SERVICE_NAME,
        metric_set=metrics.metric_set,
        dimension_set=metrics.dimension_set,
        metadata_set=metrics.metadata_set,
        default_dimensions=metrics.default_dimensions,
    )
    return metrics
