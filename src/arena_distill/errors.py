"""Named errors for bad input: each one says which file, row and column (or config key).

A pipeline that runs for hours must fail on bad data with a message a person can act on,
not with a KeyError three stages later.
"""

from __future__ import annotations


class ArenaDistillError(Exception):
    """Base class of every error the project raises on purpose."""


class DataError(ArenaDistillError, ValueError):
    """A value in an input table cannot be used.

    `row` is the row's id when it has one, else its 0-based position ("row 12").
    """

    def __init__(self, message: str, *, file: str, row: object = None, column: str | None = None):
        self.file = str(file)
        self.row = row
        self.column = column
        where = [f"file {self.file}"]
        if row is not None:
            where.append(f"row id {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{message} ({', '.join(where)})")


class MissingColumnError(DataError):
    """A required column is absent from an input table."""


class FieldParseError(DataError):
    """A prompt/response field is not a JSON list of turns and cannot be repaired."""


class LabelError(DataError):
    """The winner columns of a training row are not one-hot."""


class DuplicateIdError(DataError):
    """The same id appears twice (within one file or across the train files)."""


class ShardError(DataError):
    """Logit shards do not cover a fold's rows exactly once."""


class ConfigError(ArenaDistillError, ValueError):
    """A config value is valid for the schema but impossible for the data or the models."""

    def __init__(self, message: str, *, key: str):
        self.key = key
        super().__init__(f"{message} (config key {key!r})")


class DownloadError(ArenaDistillError, OSError):
    """A model could not be fetched from the hub (network, token, gated licence)."""


class NumericalError(ArenaDistillError, ArithmeticError):
    """A model produced inf or NaN where numbers were needed; `row` is the pair's id."""

    def __init__(self, message: str, *, row: object):
        self.row = row
        super().__init__(f"{message} (row id {row})")


class DeviceError(ArenaDistillError, RuntimeError):
    """The device asked for is not there (no GPU visible, more workers than GPUs)."""


class ModelLockError(ArenaDistillError, RuntimeError):
    """A hub model's cached snapshot is not what the run's lock pins (or the lock lacks it)."""

    def __init__(self, message: str, *, model: str, file: str | None = None):
        self.model = model
        self.file = file
        where = f"model {model}" + (f", file {file}" if file else "")
        super().__init__(f"{message} ({where})")
