"""FaceTracker: build a single-class object detector (faces by default), end to end."""

import os

# albumentations asks the package index for a newer release whenever it is imported: a network call that
# stalls and prints a warning offline (a red block in the notebook). A user's own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
