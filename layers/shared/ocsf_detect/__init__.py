"""ocsf-detect: streaming anomaly detection for OCSF security events."""

__version__ = "0.1.0"
