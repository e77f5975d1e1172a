"""The one exception type of the library: the CLI prints its message as one line."""


class AlsegError(Exception):
    """A user-facing error: bad input, missing file, impossible request.

    The message must name the offending file or value and, where possible, the fix.
    """
