"""The one exception type of the library: the CLI prints its message as one line."""


class AlsegError(Exception):
    """A user-facing error: bad input, missing file, impossible request.

    The message must name the offending file or value and, where possible, the fix.
    """


class AnnotationNeeded(AlsegError):
    """A human round of `loop --human` is waiting for its labels: not a failure, a pause. The
    message says what to annotate and how to continue; the CLI exits with ``EXIT_CODE``."""

    EXIT_CODE = 75      # EX_TEMPFAIL: try again later (after the import)
