"""Bad zips of one concern (see bad_zip.py); gathered into ``bad_inputs.BAD_ZIPS``."""

from __future__ import annotations

from tests.reliability.bad_zip import BadZip

CASES: dict[str, BadZip] = {}
