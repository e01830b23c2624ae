"""Write the app's OpenAPI document, the one contract both SDKs are built from.

``make openapi`` runs this and then regenerates the TypeScript SDK's types from the file;
``tests/sdk/test_openapi.py`` fails when the committed file and the app disagree.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from mongars.app import create_app
from mongars.config import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
OPENAPI_PATH = REPO_ROOT / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The schema as the app serves it at /openapi.json (independent of any local .env)."""
    # Building the app does no I/O, but it warns about missing web assets: not our concern here.
    logging.disable(logging.WARNING)
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(_env_file=None, data_dir=Path(data_dir))
            return create_app(settings).openapi()
    finally:
        logging.disable(logging.NOTSET)


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OPENAPI_PATH
    target.write_text(render(openapi_document()), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
