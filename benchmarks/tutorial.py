"""THE TUTORIAL'S APPROACH, re-implemented for benchmarking only (not part of the package).

Each function copies the shape of the video's code so that `benchmarks/run.py` can time it
against the package on the same inputs, in the same run:

- `tutorial_frame`: the real-time loop body: crop `frame[50:500, 50:500]`, BGR->RGB,
  `tf.image.resize` to 120, `/255`, then `model.predict` on a batch of one, every frame.
- `tutorial_label_dataset` / `tutorial_dataset`: `tf.data.Dataset.list_files(..., shuffle=False)`
  for images and labels separately, labels read per element by `load_labels` inside
  `tf.py_function`, zipped, shuffled (buffer 5000), batched 8, prefetched 4; tf.data defaults
  (autotune on, sequential maps).
- `tutorial_augment`: the serial augmentation loop: for every image, `cv2.imread`, 60 (here
  `per_image`) calls of the Albumentations pipeline, `cv2.imwrite` and `json.dump` each.

Only what is needed to run on Linux and current libraries was changed: POSIX paths, and the
albumentations box for a labelme rectangle drawn in any corner order is sorted first (the video's
labels were drawn top-left first). The package's own fixes (static label shapes, visibility rule,
pairing by name) are deliberately NOT applied here.
"""

import json
import os
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import tensorflow as tf

# ----------------------------------------------------------------------------- real time (video section 11)


def tutorial_frame(model, frame: np.ndarray):
    """One iteration of the video's real-time loop, without drawing: returns (score, box)."""
    frame = frame[50:500, 50:500, :]
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    resized = tf.image.resize(rgb, (120, 120))
    yhat = model.predict(np.expand_dims(resized / 255, 0), verbose=0)
    return yhat[0][0], yhat[1][0][:2]


# ----------------------------------------------------------------------------- dataset (video sections 6-7)


def load_image(x):
    byte_img = tf.io.read_file(x)
    img = tf.io.decode_jpeg(byte_img)
    return img


def load_labels(label_path):
    with open(label_path.numpy(), encoding="utf-8") as f:
        label = json.load(f)
    return [label["class"]], label["bbox"]


def tutorial_image_dataset(aug_split: Path) -> tf.data.Dataset:
    images = tf.data.Dataset.list_files(str(aug_split / "images" / "*.jpg"), shuffle=False)
    images = images.map(load_image)
    images = images.map(lambda x: tf.image.resize(x, (120, 120)))
    images = images.map(lambda x: x / 255)
    return images


def tutorial_label_dataset(aug_split: Path) -> tf.data.Dataset:
    labels = tf.data.Dataset.list_files(str(aug_split / "labels" / "*.json"), shuffle=False)
    labels = labels.map(lambda x: tf.py_function(load_labels, [x], [tf.uint8, tf.float16]))
    return labels


def tutorial_dataset(aug_split: Path, shuffle: int = 5000, batch: int = 8) -> tf.data.Dataset:
    train = tf.data.Dataset.zip((tutorial_image_dataset(aug_split), tutorial_label_dataset(aug_split)))
    train = train.shuffle(shuffle)
    train = train.batch(batch)
    train = train.prefetch(4)
    return train


# ----------------------------------------------------------------------------- augmentation (video section 5)


def tutorial_augmentor(crop: int = 450) -> A.Compose:
    return A.Compose(
        [
            A.RandomCrop(width=crop, height=crop),
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(p=0.2),
            A.RandomGamma(p=0.2),
            A.RGBShift(p=0.2),
            A.VerticalFlip(p=0.5),
        ],
        bbox_params=A.BboxParams(format="albumentations", label_fields=["class_labels"]),
    )


def tutorial_augment(data_split: Path, aug_split: Path, per_image: int = 60) -> int:
    """The video's loop over one split; returns the number of images written."""
    augmentor = tutorial_augmentor()
    (aug_split / "images").mkdir(parents=True, exist_ok=True)
    (aug_split / "labels").mkdir(parents=True, exist_ok=True)
    written = 0
    for image in os.listdir(data_split / "images"):
        img = cv2.imread(os.path.join(data_split, "images", image))
        coords = [0, 0, 0.00001, 0.00001]
        label_path = os.path.join(data_split, "labels", f"{image.split('.')[0]}.json")
        if os.path.exists(label_path):
            with open(label_path) as f:
                label = json.load(f)
            coords[0] = label["shapes"][0]["points"][0][0]
            coords[1] = label["shapes"][0]["points"][0][1]
            coords[2] = label["shapes"][0]["points"][1][0]
            coords[3] = label["shapes"][0]["points"][1][1]
            # (not in the video) labelme 6 keeps click order; albumentations needs x1 < x2, y1 < y2
            coords = [min(coords[0], coords[2]), min(coords[1], coords[3]),
                      max(coords[0], coords[2]), max(coords[1], coords[3])]
            coords = list(np.divide(coords, [640, 480, 640, 480]))
            # (not in the video) a face cut by the frame edge has a box outside [0, 1]
            coords = list(np.clip(coords, 0.0, 1.0))
        try:
            for x in range(per_image):
                augmented = augmentor(image=img, bboxes=[coords], class_labels=["face"])
                cv2.imwrite(os.path.join(aug_split, "images", f"{image.split('.')[0]}.{x}.jpg"),
                            augmented["image"])
                annotation = {}
                annotation["image"] = image
                if os.path.exists(label_path):
                    if len(augmented["bboxes"]) == 0:
                        annotation["bbox"] = [0, 0, 0, 0]
                        annotation["class"] = 0
                    else:
                        annotation["bbox"] = [float(v) for v in augmented["bboxes"][0]]
                        annotation["class"] = 1
                else:
                    annotation["bbox"] = [0, 0, 0, 0]
                    annotation["class"] = 0
                with open(os.path.join(aug_split, "labels", f"{image.split('.')[0]}.{x}.json"), "w") as f:
                    json.dump(annotation, f)
                written += 1
        except Exception as e:
            print(e)
    return written
