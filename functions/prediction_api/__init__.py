"""The prediction API: score OCSF events over HTTP (API Gateway REST API -> Lambda)."""
