"""One error hierarchy for the whole package.

Every message names the file (or network) involved and says what to do about it, so a user who
sees only the last line of a traceback still knows the way out.
"""


class DrfhqError(Exception):
    """Base class of every error drfhq raises on purpose."""


class MissingWeightsError(DrfhqError, FileNotFoundError):
    """An official network file is not where the registry looks for it."""


class ChecksumError(DrfhqError):
    """A file's sha256 differs from the published one."""


class CheckpointFormatError(DrfhqError):
    """A checkpoint is truncated, of an unknown format, or of another architecture."""


class UnsafeCheckpointError(CheckpointFormatError):
    """A checkpoint asks to run code or reference objects outside the allow-list (a kind of
    unreadable checkpoint: callers that refuse bad files catch CheckpointFormatError)."""


class BadImageError(DrfhqError):
    """An input image cannot be read or is outside the accepted kinds and sizes."""


class NoFaceError(DrfhqError):
    """No (large enough) face was found in an image."""
