"""A tiny functional model with the detector's inputs and outputs, for tests that need any model fast."""

from pathlib import Path

import keras


def tiny_model() -> keras.Model:
    """Input [N, 120, 120, 3] -> [score [N, 1], box [N, 4]], like facetracker.model.build_model."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((120, 120, 3))
    x = keras.layers.Conv2D(4, 3, strides=4, activation="relu")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, [keras.layers.Dense(1, activation="sigmoid")(x),
                                keras.layers.Dense(4, activation="sigmoid")(x)])


def tiny_model_file(folder: Path) -> Path:
    """The tiny model saved as folder/tiny.keras."""
    path = folder / "tiny.keras"
    tiny_model().save(path)
    return path
