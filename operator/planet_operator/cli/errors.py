"""Errors the CLI reports as a message and exit code 2, never as a traceback."""


class UsageError(Exception):
    """The command line or its input files are wrong."""


class InvalidInput(UsageError):
    """A manifest failed validation; the message lists every field problem."""
