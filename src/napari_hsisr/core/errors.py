"""Errors raised for bad input: their message says what is wrong and what to do."""

import re


class InputError(ValueError):
    """Bad user input (shape, dtype, file, parameter). The message names the fix.

    The message is always one line: line breaks (e.g. in a third-party reader's error that a
    message quotes) become single spaces, so the CLI prints exactly one ``error:`` line."""

    def __init__(self, message="", *args):
        if isinstance(message, str):
            message = re.sub(r"\s*[\r\n]+\s*", " ", message).strip()
        super().__init__(message, *args)
