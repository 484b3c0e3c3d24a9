"""Print the API's OpenAPI document: ``python -m prediction_api.openapi > docs/openapi.json``.

The committed docs/openapi.json must equal this output (a unit test checks it).
"""

from __future__ import annotations

import json
import sys
from typing import Any


def render() -> str:
    """The document as committed: sorted keys, two-space indent, trailing newline."""
    from prediction_api.handler import openapi_document

    document: dict[str, Any] = openapi_document()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
