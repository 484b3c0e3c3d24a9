"""Offline training (needs the ``train`` extra: torch, onnx). Never imported at serving time."""
