"""Stream scoring: Kinesis batches of OCSF events in, Detection Findings out."""
