"""What resolvers hand the engine: a cover reference, a per-track failure, a stop signal.

Kept apart from the engine so the HTTP layer and resolvers can raise these without importing it.
"""

from dataclasses import dataclass
from typing import Protocol


@dataclass
class CoverRef:
    cover_id: str  # file and dedupe key, [A-Za-z0-9_-]+
    album_id: str = ""
    album_name: str = ""
    release_date: str = ""
    url: str = ""  # http(s) URL or local path; "" when the resolver renders the cover


class CoverError(Exception):
    """One track failed; it is recorded in the manifest and the run goes on."""

    def __init__(self, reason: str, detail: str = "", retryable: bool = False):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail, self.retryable = reason, detail, retryable


class StopScrape(Exception):
    """Stop the whole run now (e.g. a daily quota); finished work is kept."""


class Resolver(Protocol):
    name: str

    def resolve(self, row: dict) -> CoverRef: ...

    def fetch(self, ref: CoverRef) -> bytes: ...
