"""Errors raised for bad input: their message says what is wrong and what to do."""


class InputError(ValueError):
    """Bad user input (shape, dtype, file, parameter). The message names the fix."""


class Cancelled(RuntimeError):
    """A run was stopped by the caller before it finished; nothing was produced."""
