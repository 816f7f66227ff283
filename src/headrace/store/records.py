"""The store's vocabulary: runner records and the queries' inputs, shared by every store."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from headrace.states import utcnow


class RunnerRecord(BaseModel):
    """One live runner process, as other runners see it through its heartbeat."""

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(default_factory=uuid4)
    name: str
    host: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)
    started: datetime = Field(default_factory=utcnow)
    heartbeat: datetime = Field(default_factory=utcnow)
    stopped: datetime | None = None


MAX_PAGE = 1000
"""Most rows one listing query returns."""
