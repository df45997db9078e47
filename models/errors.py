"""The suite's one user-facing error type.

Anything a user can get wrong (a bad config, an unknown model, a size out of range) raises
:class:`SimError`; the CLI prints it as one line on stderr and exits with status 2.  Any other
exception is a bug and keeps its traceback.
"""


class SimError(Exception):
    """A problem with the user's input, reported as one line."""

    exit_code = 2

    def __init__(self, message: str):
        # one line, always: the CLI contract is a single line on stderr
        super().__init__(" ".join(str(message).split()))
