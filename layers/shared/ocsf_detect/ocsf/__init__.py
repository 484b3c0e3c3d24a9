"""Reading OCSF events: decoding, limits, class dispatch and explicit outcomes."""

from ocsf_detect.ocsf.outcomes import (
    Parsed,
    ParseOutcome,
    Rejected,
    RejectReason,
    Unsupported,
    UnsupportedReason,
)
from ocsf_detect.ocsf.parser import EventParser, decode_event

__all__ = [
    "EventParser",
    "ParseOutcome",
    "Parsed",
    "RejectReason",
    "Rejected",
    "Unsupported",
    "UnsupportedReason",
    "decode_event",
]
