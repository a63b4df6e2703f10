"""The one exception type for bad input: its message is shown to the user as is, on one line."""


class CnnError(Exception):
    """A problem the user can fix (bad option, missing data, unusable file). The CLI exits 2 with it."""


class DataError(CnnError):
    """A dataset cannot be found, read or split."""


class ImageError(CnnError):
    """An uploaded or named file is not a usable image."""


class CheckpointError(CnnError):
    """A checkpoint is missing, unreadable, unsafe or for another model."""


ERROR_PREFIX = "error: "  # how ``python -m cnn_core`` prints a CnnError: one line on stderr


def last_error(stderr: str) -> str:
    """What a ``python -m cnn_core`` child that left no result file said last: its last ``error: ...`` message
    (from any torchrun rank, over torchrun's own report), else its last line that is not a rule of = or -;
    "" when it said nothing. Only for a child that died before writing its file: the files are the protocol."""
    said = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip().strip("=-")]
    mine = [ln[len(ERROR_PREFIX):] for ln in said if ln.lower().startswith(ERROR_PREFIX)]
    return (mine or said or [""])[-1]
