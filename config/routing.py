"""The Lambda's routing table: bucket → collection, region, queue URL. Built at deploy time, read at run time.

Kept free of YAML and of the environment model's loader so the Lambda asset needs only pydantic.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, RootModel

ROUTING_ENV_VAR = "ROUTING_TABLE"


class Route(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    collection: str = Field(min_length=1)
    region: str = Field(min_length=1)
    queue_url: str = Field(min_length=1)


class RoutingTable(RootModel[dict[str, Route]]):
    """Bucket name → Route. Serialized into the Lambda's environment as compact JSON."""

    def route_for(self, bucket: str) -> Route | None:
        return self.root.get(bucket)

    def to_env(self) -> str:
        return json.dumps({k: v.model_dump() for k, v in sorted(self.root.items())}, separators=(",", ":"))

    @classmethod
    def from_env(cls, text: str) -> RoutingTable:
        return cls.model_validate_json(text)


def routing_table_for(environment: object, queue_url_for: Callable[[str, str], str]) -> RoutingTable:
    """Build the table from an EnvironmentConfig; ``queue_url_for(region, queue_name)`` resolves each URL."""
    routes: dict[str, Route] = {}
    for region in environment.regions:  # type: ignore[attr-defined]
        url = queue_url_for(region.region, region.queue_name)
        for bucket in region.buckets:
            routes[bucket.name] = Route(collection=bucket.collection, region=region.region, queue_url=url)
    return RoutingTable(routes)
