"""Step 9 of the tutorial: the losses and the optimizer.

The box loss is the tutorial's: squared error of the top-left corner plus squared error of the
width and height, summed over the batch (not averaged). The tutorial applies it to every sample,
so images without a face are pushed towards the box [0, 0, 0, 0]; the masked variant counts only
faces with a box and sums over them. The score loss is binary cross-entropy (a batch mean);
total = box loss + 0.5 * score loss.
"""

import keras
from keras import ops

CLASS_LOSS_WEIGHT = 0.5
DECAY_TO = 0.75  # learning rate after one epoch, as a fraction of the initial one (the tutorial's legacy decay)


def _box_errors(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
    """Per-sample squared error of the top-left corner and of the width and height: shape [N]."""
    y_true = ops.cast(y_true, y_pred.dtype)
    corner = ops.sum(ops.square(y_true[:, :2] - y_pred[:, :2]), axis=1)
    size_true = y_true[:, 2:] - y_true[:, :2]
    size_pred = y_pred[:, 2:] - y_pred[:, :2]
    return corner + ops.sum(ops.square(size_true - size_pred), axis=1)


def localization_loss(y_true: keras.KerasTensor, y_pred: keras.KerasTensor) -> keras.KerasTensor:
    """The tutorial's box loss: corner and size squared errors summed over the batch, every sample counted.

    Args:
        y_true: boxes [N, 4] as (x1, y1, x2, y2) in [0, 1].
        y_pred: predicted boxes [N, 4].

    Returns:
        A scalar.
    """
    return ops.sum(_box_errors(y_true, y_pred))


def masked_localization_loss(y_true_box: keras.KerasTensor, y_pred_box: keras.KerasTensor,
                             y_true_class: keras.KerasTensor) -> keras.KerasTensor:
    """The tutorial's box loss summed over the faces that have a box (images without a face add nothing,
    nor does a face cut to a sliver, which augmentation labels class 1 with the empty box).

    Args:
        y_true_box: boxes [N, 4]; y_pred_box: predicted boxes [N, 4]; y_true_class: classes [N, 1] (or [N]) of 0/1.

    Returns:
        A scalar.
    """
    y_true_box = ops.cast(y_true_box, y_pred_box.dtype)
    boxed = (y_true_box[:, 2] > y_true_box[:, 0]) & (y_true_box[:, 3] > y_true_box[:, 1])
    positive = ops.reshape(ops.cast(y_true_class, y_pred_box.dtype), (-1,)) * ops.cast(boxed, y_pred_box.dtype)
    return ops.sum(_box_errors(y_true_box, y_pred_box) * positive)


def classification_loss() -> keras.losses.Loss:
    """Binary cross-entropy of the face score (mean over the batch), as in the tutorial."""
    return keras.losses.BinaryCrossentropy()


def total_loss(localization: keras.KerasTensor, classification: keras.KerasTensor) -> keras.KerasTensor:
    """total = box loss + 0.5 * score loss."""
    return localization + CLASS_LOSS_WEIGHT * classification


def make_optimizer(batches_per_epoch: int, learning_rate: float = 1e-4,
                   ema_momentum: float = 0.0) -> keras.optimizers.Optimizer:
    """Adam with inverse-time decay to 75% of `learning_rate` after one epoch (the tutorial's legacy `decay`).

    lr(step) = learning_rate / (1 + step / batches_per_epoch / 3). With `ema_momentum` > 0, Adam also
    keeps a moving average of the weights (Keras' `use_ema`); `keras.callbacks.SwapEMAWeights` reads it.
    """
    schedule = keras.optimizers.schedules.InverseTimeDecay(
        learning_rate, decay_steps=max(1, batches_per_epoch), decay_rate=1 / DECAY_TO - 1)
    return keras.optimizers.Adam(learning_rate=schedule, use_ema=ema_momentum > 0, ema_momentum=ema_momentum)
