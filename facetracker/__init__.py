"""FaceTracker: build a single-class object detector (faces by default), end to end."""

__version__ = "0.1.0"
