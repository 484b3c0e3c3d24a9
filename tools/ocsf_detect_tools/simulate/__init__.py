"""Deterministic, labeled synthetic OCSF traffic of one simulated organisation.

>>> from ocsf_detect_tools.simulate import generate_traffic, write_jsonl, write_labels_csv
>>> traffic = generate_traffic(2000, seed=7)          # ~3 % labeled attacks
>>> baseline = generate_traffic(2000, seed=1, attacks=False)   # same organisation
"""

from ocsf_detect_tools.simulate.attacks import ATTACK_TYPES
from ocsf_detect_tools.simulate.endpoint import ATTACK_TYPES as ENDPOINT_ATTACK_TYPES
from ocsf_detect_tools.simulate.organisation import Organisation, build_organisation
from ocsf_detect_tools.simulate.traffic import (
    BENIGN,
    DEFAULT_DAYS,
    DEFAULT_START_MS,
    Label,
    Traffic,
    generate_traffic,
    write_jsonl,
    write_labels_csv,
)

__all__ = [
    "ATTACK_TYPES",
    "BENIGN",
    "DEFAULT_DAYS",
    "DEFAULT_START_MS",
    "ENDPOINT_ATTACK_TYPES",
    "Label",
    "Organisation",
    "Traffic",
    "build_organisation",
    "generate_traffic",
    "write_jsonl",
    "write_labels_csv",
]
