"""The exception hierarchy; the CLI turns each into one line and an exit code."""
from __future__ import annotations


class FlywayError(Exception):
    """Base class of every error flyway raises on purpose."""

    exit_code = 1


class InputError(FlywayError):
    """A user-supplied file or value cannot be used.

    The message names the file, the line (row) and the column where known, and
    what was expected: ``tags.csv:1043: location-lat = 95.2 is outside [-90, 90]``.
    """

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        self.file, self.line, self.column, self.detail = file, line, column, message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        col = f"{column}: " if column and column not in message else ""
        super().__init__(f"{where}{col}{message}")


class ConfigError(InputError):
    """A configuration or parameter file or value is invalid."""


class SchemaError(FlywayError):
    """A table does not follow its contract in flyway.schema."""

    exit_code = 3


class StoreError(FlywayError):
    """The store is missing, unreadable or in a state flyway cannot use."""

    exit_code = 3


class StoreLockedError(StoreError):
    """Another process holds the store's write lock."""

    exit_code = 75  # EX_TEMPFAIL: try again later
