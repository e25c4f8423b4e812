#!/usr/bin/env python3
"""Benchmark: fine-tuning steps per second, `tfmp finetune` against Keras 3 on the CPU, same model
and weights, same batch size, same optimizer (Adam) and loss, in float32 and in mixed float16.

  .venv/bin/python Benchmarks/training.py [--steps 40] [--repeat 3] [--models digits,mlp,cnn]

Keras trains with `model.fit` (float32; and the model cloned under the mixed_float16 policy with
the same weights, which wraps Adam in a LossScaleOptimizer); tfmp fine-tunes the exported model and
its float16 conversion with float32 master weights (`tfmp convert --weights float32`), dynamic loss
scaling by default. Each run is two epochs of STEPS steps; the second epoch's time is taken (the
first includes Keras's tracing and tfmp's plan building), and the median over REPEAT runs is
printed with the ratio tfmp / Keras. The models have no batch normalization or dropout, so that
Keras's training mode computes what tfmp's inference-mode graph computes.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def models():
    """name -> (builder of a Keras model, or None for the shipped digits CNN; input shape; classes)."""
    import keras

    def mlp():
        x = keras.Input((784,), name="x")
        h = keras.layers.Dense(1024, activation="relu")(x)
        h = keras.layers.Dense(1024, activation="relu")(h)
        return keras.Model(x, keras.layers.Dense(10, activation="softmax")(h))

    def cnn():
        x = keras.Input((32, 32, 3), name="x")
        h = x
        for filters in (32, 64, 128):
            h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
            h = keras.layers.MaxPooling2D()(h)
        h = keras.layers.Flatten()(h)
        return keras.Model(x, keras.layers.Dense(10, activation="softmax")(h))

    return {"digits": (None, (8, 8, 1), 10), "mlp": (mlp, (784,), 10), "cnn": (cnn, (32, 32, 3), 10)}


def keras_epoch_seconds(model_path, mixed, data, batch_size):
    """Second-epoch seconds of model.fit on the exported model's weights (rebuilt from the export's
    Keras twin), in float32 or under mixed_float16."""
    script = r"""
import json, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras
path, mixed, data, batch_size = sys.argv[1], sys.argv[2] == "1", sys.argv[3], int(sys.argv[4])
model = keras.saving.load_model(path)
if mixed:
    keras.mixed_precision.set_global_policy("mixed_float16")
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    model = clone
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
with np.load(data) as d:
    x, y = d["x"], d["y"]
times = []
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): times.append(time.perf_counter() - self.start)
model.fit(x, y, batch_size=batch_size, epochs=2, shuffle=False, verbose=0, callbacks=[Timer()])
print(json.dumps(times))
"""
    out = subprocess.run([sys.executable, "-c", script, model_path, "1" if mixed else "0", data, str(batch_size)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])[1]


def tfmp_epoch_seconds(tfmp, model, data, batch_size, folder):
    log = os.path.join(folder, "log.jsonl")
    subprocess.run([tfmp, "finetune", model, os.path.join(folder, "trained"), "--data", data,
                    "--loss", "sparse_categorical_crossentropy", "--batch-size", str(batch_size),
                    "--epochs", "2", "--no-shuffle", "--log", log, "--force"],
                   capture_output=True, text=True, check=True)
    epochs = [json.loads(line) for line in open(log) if '"seconds"' in line]
    return epochs[1]["seconds"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="digits,mlp,cnn")
    args = parser.parse_args()
    subprocess.run(["swift", "build", "-c", "release", "--product", "tfmp"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    tfmp = os.path.join(ROOT, ".build", "release", "tfmp")
    import keras
    keras.utils.set_random_seed(1)
    catalog = models()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"CPU: {cpu}, {os.cpu_count()} cores; batch {args.batch_size}, {args.steps} steps per epoch, "
          f"second-epoch time, median of {args.repeat}")
    print(f"{'model':8} {'precision':10} {'Keras steps/s':>14} {'tfmp steps/s':>13} {'tfmp/Keras':>11}")
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            build, shape, classes = catalog[name]
            folder = os.path.join(work, name)
            os.makedirs(folder)
            keras_path = os.path.join(folder, "model.keras")
            exported = os.path.join(folder, "exported")
            if build is None:  # the shipped digits CNN, rebuilt in Keras from its SavedModel weights
                import tensorflow as tf
                source = tf.saved_model.load(os.path.join(ROOT, "Examples", "digits"))
                inp = keras.Input(shape, name="image")
                h = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inp)
                h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(h)
                h = keras.layers.MaxPooling2D(2)(h)
                h = keras.layers.Flatten()(h)
                h = keras.layers.Dense(64, activation="relu", name="dense")(h)
                model = keras.Model(inp, keras.layers.Dense(10, activation="softmax", name="probabilities")(h))
                model.set_weights([v.numpy() for v in source.variables])
                input_name = "image"
            else:
                model = build()
                input_name = "x"
            model.save(keras_path)
            model.export(exported, verbose=False)
            converted = os.path.join(folder, "converted")
            subprocess.run([tfmp, "convert", exported, converted, "--weights", "float32"], check=True,
                           capture_output=True)
            rng = np.random.default_rng(0)
            count = args.steps * args.batch_size
            x = rng.random((count, *shape), dtype=np.float32)
            y = rng.integers(0, classes, count).astype("int64")
            keras_data = os.path.join(folder, "keras.npz")
            np.savez(keras_data, x=x, y=y)
            tfmp_data = os.path.join(folder, "tfmp.npz")
            np.savez(tfmp_data, **{input_name: x, "y": y})
            for precision, mixed, ours in (("float32", False, exported), ("float16", True, converted)):
                theirs = statistics.median(keras_epoch_seconds(keras_path, mixed, keras_data, args.batch_size)
                                           for _ in range(args.repeat))
                mine = statistics.median(tfmp_epoch_seconds(tfmp, ours, tfmp_data, args.batch_size, folder)
                                         for _ in range(args.repeat))
                print(f"{name:8} {precision:10} {args.steps / theirs:14.1f} {args.steps / mine:13.1f} "
                      f"{theirs / mine:10.2f}x", flush=True)


if __name__ == "__main__":
    main()
