"""The error every download failure raises."""

from __future__ import annotations


class DownloadError(OSError):
    """A dataset that could not be fetched, verified or extracted (the message says why)."""
