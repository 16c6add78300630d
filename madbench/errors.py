"""Errors that reach the user as one line (no traceback) and a non-zero exit."""


class MadbenchError(Exception):
    """Base class: the message is the whole story for the user."""


class ConfigError(MadbenchError):
    """A config value is invalid; the message names the field and what is allowed."""


class DataError(MadbenchError):
    """A data file is missing or malformed; the message names the file and what was expected."""


class TrainingError(MadbenchError):
    """Training cannot go on (non-finite loss, ...); recorded as a failed row."""
