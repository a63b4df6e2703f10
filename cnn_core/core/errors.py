"""The one exception type for bad input: its message is shown to the user as is, on one line."""


class CnnError(Exception):
    """A problem the user can fix (bad option, missing data, unusable file). The CLI exits 2 with it."""


class DataError(CnnError):
    """A dataset cannot be found, read or split."""


class ImageError(CnnError):
    """An uploaded or named file is not a usable image."""


class CheckpointError(CnnError):
    """A checkpoint is missing, unreadable, unsafe or for another model."""
