"""What the fetch stage is asked for: the object a message names, the version pinned, and how to fetch it."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from contract import ObjectHead, RestoredWork


@dataclass(frozen=True)
class FetchRequest:
    """The object a RestoredWork message names; ``etag``/``version_id`` pin the bytes (None: pin what HEAD saw)."""

    work_rid: str
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None
    #: the attempt's HEAD (the worker's restore check): the download pins to it instead of HEADing again
    head: ObjectHead | None = None

    @classmethod
    def of(cls, work: RestoredWork, head: ObjectHead | None = None) -> FetchRequest:
        """The request for a message's object version, pinned to ``head`` when the attempt already HEADed it."""
        return cls(work.work_rid, work.bucket, work.key, work.size, work.etag, work.version_id, head)

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class DownloadIdentity:
    """The pinned object version every ranged GET of a fetch reads (and a segment journal belongs to)."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    size: int
    part_size: int


class FetchSettings(BaseModel):
    """How the fetch stage downloads one object; the defaults suit BDRC zips over a WAN (the one place they live)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: bytes of one segment (a ranged read of whole members; a larger member is read in GETs of this size): the
    #: unit of parallelism and of resume (a killed run keeps the segments it verified)
    part_size: int = Field(default=64 * 2**20, ge=1)
    max_concurrency: int = Field(default=8, ge=1)
    #: free bytes that must remain on the staging filesystem once the payload is written
    min_free_bytes: int = Field(default=2 * 2**30, ge=0)
    verify_checksum: bool = True
    #: tries of one part on a transient error (connection reset, short body, 5xx after botocore's retries)
    part_attempts: int = Field(default=3, ge=1)
