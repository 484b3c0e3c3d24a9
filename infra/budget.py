"""Lambda's size limits, checked at synth with every part named.

* Unzipped, a function's code and all its layers may hold 250 MB (``check_unzipped_budget``);
  the model layer counts at the size of the bundle being deployed.
* A bundle fetched from S3 (``bundleSource=s3``) lands in /tmp: the downloaded archive and
  its unpacked copy are both there until the archive is deleted, and a ZIP of model weights
  and vectors is barely smaller than what it holds, so the peak is counted as twice the
  bundle (``check_tmp_budget``) against the function's ephemeral storage.

A synth over either limit fails (``make synth`` prints the message and exits 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infra.layers import LAMBDA_UNZIPPED_LIMIT_BYTES, LayerTooLargeError

MB = 1024 * 1024


class SizeBudgetError(LayerTooLargeError):
    """A function would not fit Lambda's limits; the message names each part and its size."""


@dataclass(frozen=True)
class SizePart:
    name: str
    size_bytes: int


def check_unzipped_budget(
    parts: Sequence[SizePart], limit_bytes: int = LAMBDA_UNZIPPED_LIMIT_BYTES
) -> int:
    """The total of ``parts``; ``SizeBudgetError`` listing every part when over ``limit_bytes``.

    >>> check_unzipped_budget([SizePart("code", 10), SizePart("layer", 20)])
    30
    """
    total = sum(part.size_bytes for part in parts)
    if total > limit_bytes:
        listed = "; ".join(f"{part.name}: {part.size_bytes / MB:.1f} MB" for part in parts)
        raise SizeBudgetError(
            f"a function and its layers come to {total / MB:.1f} MB unzipped, over Lambda's "
            f"{limit_bytes / MB:.0f} MB limit ({listed}). Trim the dependency layer, or ship "
            "the bundle from S3 (-c bundleSource=s3) instead of as a layer"
        )
    return total


def check_tmp_budget(function: str, bundle_bytes: int, ephemeral_storage_mb: int) -> int:
    """Peak /tmp use of fetching the bundle (archive + unpacked copy), checked against
    ``ephemeral_storage_mb``; returns the peak in bytes."""
    peak = 2 * bundle_bytes
    if peak > ephemeral_storage_mb * MB:
        raise SizeBudgetError(
            f"{function} fetches the bundle into /tmp: the archive and its unpacked copy "
            f"need up to {peak / MB:.1f} MB (bundle {bundle_bytes / MB:.1f} MB, twice), over "
            f"its {ephemeral_storage_mb} MB of ephemeral storage. Raise the function's "
            "ephemeral storage (ScoringConfig.ephemeral_storage_mb) or shrink the bundle"
        )
    return peak
