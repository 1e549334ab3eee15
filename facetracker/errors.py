"""The one error type users see: a message that names the file or argument and the fix."""


class FaceTrackerError(Exception):
    """A mistake the user can fix. The CLI prints it on one line and exits non-zero."""
