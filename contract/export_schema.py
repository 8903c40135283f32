"""Write the JSON Schema of RestoredWork beside the model: ``python -m contract.export_schema``."""

from __future__ import annotations

import json
from pathlib import Path

from contract.restored_work import SCHEMA_VERSION, json_schema

SCHEMA_PATH = Path(__file__).with_name(f"restored_work.v{SCHEMA_VERSION}.schema.json")


def render() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(render(), encoding="utf-8")
    print(SCHEMA_PATH)


if __name__ == "__main__":
    main()
