"""FaceTracker: build a single-class object detector (faces by default), end to end."""

import os

# albumentations asks the package index for a newer release whenever it is imported: a network call that
# stalls and prints a warning offline (a red block in the notebook). A user's own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, bf16 or AMX; on the others
# they are off, yet they train our models faster there too (BENCHMARKS.md, "Training"). They are chosen
# when TensorFlow is imported, so here, before it; a user's own setting wins. The notice TensorFlow then
# prints is kept out of the terminal by `quiet`.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
