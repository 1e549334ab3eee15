"""Real-time frame latency: the tutorial's per-frame `model.predict` against the package's ways of running a model.

One 640x480 frame in, one box out, preprocessing included. The tutorial crops, resizes with
`tf.image.resize` and calls `model.predict` on a batch of one for every frame (`benchmarks/tutorial.py`);
the package's `Detector` calls one traced `tf.function` (Keras' own advice: `predict()` is built for
batches), optionally XLA-compiled (`jit_compile=True`), or runs an exported float32 `.tflite` file.
OpenCV's Haar cascade (no training) is the classic baseline. Quantized files are in the quantization item.
"""

from common import fmt, frames_of, interleave, sample_session

SETTINGS = {
    True: {"frames": 8, "rounds": 2, "light_frames": 20},
    False: {"frames": 20, "rounds": 3, "light_frames": 60},
}
PREDICT = "tutorial per-frame model.predict"


def jit_detector(model):
    """A Detector whose forward pass is XLA-compiled."""
    import tensorflow as tf

    from facetracker.inference import Detector, split_outputs

    size = model.input_shape[1:]
    forward = tf.function(lambda x: model(x, training=False), jit_compile=True,
                          input_signature=[tf.TensorSpec((None, *size), tf.float32)])
    return Detector(lambda x: split_outputs([t.numpy() for t in forward(tf.constant(x))]), size[0], "jit")


def methods_of(backbone: str, root, jit: bool) -> dict:
    """The ways of running one backbone (random weights: speed does not depend on them)."""
    from tutorial import tutorial_frame

    from facetracker.export import export_model
    from facetracker.inference import Detector
    from facetracker.model import build_model

    model = build_model(backbone, weights="none")
    path = root / "models" / f"latency_{backbone}.keras"
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    methods = {f"{backbone}: {PREDICT}": lambda frame: tutorial_frame(model, frame),
               f"{backbone}: Detector (tf.function)": Detector.from_keras(model).warm_up()}
    if jit:
        methods[f"{backbone}: Detector, jit_compile=True"] = jit_detector(model).warm_up()
    methods[f"{backbone}: TFLite float32 (Detector.load)"] = Detector.load(export_model(path, "tflite", path.parent))
    return methods


def rows_of(timings: dict) -> list[list]:
    """Table rows with the speed-up over the same backbone's per-frame predict."""
    rows = []
    for name, timing in timings.items():
        backbone = name.split(":")[0]
        base = timings.get(f"{backbone}: {PREDICT}")
        speedup = f"{base['ms']['median'] / timing['ms']['median']:.1f}x" if base else None
        rows.append([name, fmt(timing["round_ms"]), f"{1000 / timing['ms']['median']:.0f}", speedup])
    return rows


def run(quick: bool) -> dict:
    """Time VGG16's ways and Haar, then the light backbones' ways, each set interleaved on the same frames."""
    from facetracker.evaluate import haar_detection
    from facetracker.prelabel import haar_detector

    cfg = SETTINGS[quick]
    root = sample_session()
    vgg = methods_of("vgg16", root, jit=True)
    cascade = haar_detector()
    vgg["OpenCV Haar cascade (full frame)"] = lambda frame: haar_detection(cascade, frame)
    vgg_times = interleave(vgg, frames_of(root, cfg["frames"]), cfg["rounds"])
    light = {**methods_of("small", root, jit=False), **methods_of("mobilenetv2", root, jit=False)}
    light_times = interleave(light, frames_of(root, cfg["light_frames"]), cfg["rounds"])
    columns = ["method", "ms/frame (round medians)", "frames/s", "speed-up vs its per-frame predict"]
    base = vgg_times[f"vgg16: {PREDICT}"]["ms"]["median"]
    ours = vgg_times["vgg16: Detector (tf.function)"]["ms"]["median"]
    overhead = base - ours
    return {
        "title": "Real-time frame latency",
        "tables": [
            {"caption": f"VGG16-120, {cfg['frames']} frames x {cfg['rounds']} rounds:", "columns": columns,
             "rows": rows_of(vgg_times)},
            {"caption": f"Light backbones, {cfg['light_frames']} frames x {cfg['rounds']} rounds:",
             "columns": columns, "rows": rows_of(light_times)},
        ],
        "findings": [f"`predict` costs about {overhead:.0f} ms per call more than the traced function on VGG16 "
                     f"({base:.0f} vs {ours:.0f} ms): the per-call overhead, paid on every frame."],
        "vgg16": vgg_times,
        "light": light_times,
    }
