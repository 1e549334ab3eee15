"""The one error type a user can cause: its message names the file or setting and the fix."""


class FaceTrackerError(Exception):
    """A problem the user can fix; the CLI prints it on one line and exits non-zero."""

    def _render_traceback_(self) -> list[str]:
        """In Jupyter, show the message alone: the traceback of a user mistake only hides the fix."""
        return [f"\033[1;31mFaceTrackerError\033[0m: {self}"]
