"""ONNX export of the encoder with a dynamic batch axis."""

from __future__ import annotations

from pathlib import Path

import torch

from ocsf_detect_tools.training.model import TabularResNet

INPUT_NUMERIC = "numeric"
INPUT_CATEGORICAL = "categorical"
OUTPUT_EMBEDDING = "embedding"
OPSET = 17


def export_onnx(model: TabularResNet, n_numeric: int, n_categorical: int, path: Path) -> Path:
    model.eval()
    example = (
        torch.zeros(2, n_numeric, dtype=torch.float32),
        torch.zeros(2, n_categorical, dtype=torch.int64),
    )
    torch.onnx.export(
        model,
        example,
        str(path),
        input_names=[INPUT_NUMERIC, INPUT_CATEGORICAL],
        output_names=[OUTPUT_EMBEDDING],
        dynamic_axes={
            INPUT_NUMERIC: {0: "batch"},
            INPUT_CATEGORICAL: {0: "batch"},
            OUTPUT_EMBEDDING: {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,
    )
    return path
