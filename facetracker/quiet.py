"""Native start-up lines that no log setting hides, kept out of the user's terminal and notebook.

TensorFlow with its oneDNN kernels on (`facetracker/__init__.py` turns them on) prints a notice while it
is imported, and LiteRT an INFO line for its CPU delegate, both straight to file descriptor 2 and before
any TF_CPP_MIN_LOG_LEVEL applies. Our one-line error messages must not sit under them.
"""

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Iterator
from types import ModuleType


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Silence C++ writes to stderr (file descriptor 2) for the block; Python's exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _SilencedLoader(importlib.abc.Loader):
    """A module's own loader, run with native stderr silenced."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with native_stderr_silenced():
            self.loader.exec_module(module)

    def __getattr__(self, name: str) -> object:  # resource readers and the like: the real loader's
        return getattr(self.loader, name)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as Python would, once, and hands it a loader that silences its native notices."""

    def find_spec(self, name: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilencedLoader(spec.loader)
        return spec


def tensorflow_imported_quietly() -> None:
    """Make the process's first `import tensorflow`, wherever it happens (Keras' import too), silent on stderr.

    TensorFlow loads only when a step needs it, deep in the step's code, so the CLI sets this up once at
    its start rather than importing TensorFlow itself (the data steps never load it).
    """
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
