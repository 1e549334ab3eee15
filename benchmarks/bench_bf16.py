"""bf16 (mixed_bfloat16) on this CPU: float32 and bf16 copies of the same model, side by side.

Frame latency through the package's Detector, the largest output difference between the two copies,
and, for the small backbone, training speed under each policy. Without avx512_bf16 or AMX, TensorFlow
emulates bf16 matrix products on a CPU, so bf16 is not expected to help there.
"""

from common import BATCH, fit_rate, fmt, frames_of, interleave, log, sample_session, stats, synthetic, tracker

SETTINGS = {True: {"frames": 8, "light_frames": 20, "rounds": 2, "steps": 15},
            False: {"frames": 20, "light_frames": 60, "rounds": 3, "steps": 40}}


def compare(backbone: str, root, cfg: dict) -> dict:
    """Latency and output difference of float32 vs mixed_bfloat16 copies of one backbone (same weights)."""
    import keras
    import numpy as np

    from facetracker.inference import Detector, frame_to_input
    from facetracker.model import build_model

    keras.mixed_precision.set_global_policy("float32")
    m32 = build_model(backbone, weights="none")
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    m16 = build_model(backbone, weights="none")
    keras.mixed_precision.set_global_policy("float32")
    m16.set_weights(m32.get_weights())
    frames = frames_of(root, cfg["frames"] if backbone == "vgg16" else cfg["light_frames"])
    d32, d16 = Detector.from_keras(m32).warm_up(), Detector.from_keras(m16).warm_up()
    x = np.stack([frame_to_input(f)[0] for f in frames])
    (s32, b32), (s16, b16) = d32.predict(x), d16.predict(x)
    latency = interleave({"float32": d32, "mixed_bfloat16": d16}, frames, cfg["rounds"])
    return {"backbone": backbone, "max_score_diff": float(np.max(np.abs(s32 - s16))),
            "max_box_diff": float(np.max(np.abs(b32 - b16))), "latency": latency}


def training(cfg: dict) -> dict:
    """Training images/s of the small backbone under each policy, interleaved."""
    import keras

    models = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        models[policy] = tracker("small", BATCH)
    keras.mixed_precision.set_global_policy("float32")
    data = synthetic(BATCH)
    for model in models.values():
        model.fit(data, epochs=1, steps_per_epoch=3, verbose=0)
    rates = {policy: [] for policy in models}
    for r in range(2):
        for policy, model in models.items():
            rates[policy].append(fit_rate(model, data, cfg["steps"], BATCH))
        log(f"training round {r + 1}: " + ", ".join(f"{p} {v[-1]:.1f} img/s" for p, v in rates.items()))
    return {policy: stats(v) for policy, v in rates.items()}


def run(quick: bool) -> dict:
    """VGG16 and small: latency and differences; small: training."""
    cfg = SETTINGS[quick]
    root = sample_session()
    results = [compare(backbone, root, cfg) for backbone in ("vgg16", "small")]
    train = training(cfg)
    rows = []
    for r in results:
        f32, f16 = r["latency"]["float32"]["ms"], r["latency"]["mixed_bfloat16"]["ms"]
        rows.append([r["backbone"], fmt(f32), fmt(f16), f"{f32['median'] / f16['median']:.2f}x",
                     f"{r['max_score_diff']:.3f} / {r['max_box_diff']:.3f}"])
    return {
        "title": "bf16 (mixed_bfloat16)",
        "tables": [
            {"columns": ["backbone", "float32 ms/frame", "bf16 ms/frame", "bf16 speed-up",
                         "max abs diff score / box"], "rows": rows},
            {"caption": f"Training the small backbone, batch {BATCH}:", "columns": ["policy", "images/s"],
             "rows": [[policy, fmt(s)] for policy, s in train.items()]},
        ],
        "compare": results,
        "training": train,
    }
