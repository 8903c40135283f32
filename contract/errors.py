"""Named errors of the contract. Both sides turn them into their own failure handling."""

from __future__ import annotations


class ContractError(ValueError):
    """A message or key that does not satisfy the contract."""


class InvalidMessage(ContractError):
    """The body is not JSON, misses fields or has fields of the wrong type."""


class UnsupportedSchemaVersion(ContractError):
    """A schema version this code does not know: rejected whole, never half-parsed."""

    def __init__(self, version: object, supported: tuple[int, ...]) -> None:
        self.version = version
        super().__init__(
            f"unsupported RestoredWork schema_version {version!r}; this finisher understands "
            f"{', '.join(map(str, supported))} — upgrade the finisher before it consumes this queue"
        )
