#!/usr/bin/env python3
"""Benchmark: `tfmp run` throughput against TensorFlow CPU on the same SavedModels.

  .venv/bin/python Benchmarks/runtime.py [--repeat 20]

For the digits CNN (Examples/digits), ResNet50 and a BERT-base encoder (sequence 128; both in
bench-work/, made by Scripts/make_fixtures.py) at batch 1 and 32, float32 and converted to
float16 by tfmp, prints the median time per run of each and items per second, and tfmp's
throughput as a share of TensorFlow's. Both run in-process after a warm-up (tfmp via
`tfmp run --repeat`); the big models at batch 32 run 3 times each.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tf_median_ms(path, key, x, repeat):
    fn = tf.saved_model.load(path).signatures["serving_default"]
    tensor = tf.constant(x)
    fn(**{key: tensor})
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(**{key: tensor})
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def tfmp_median_ms(tfmp, path, key, x, repeat, folder):
    array = os.path.join(folder, "input.npy")
    np.save(array, x)
    result = subprocess.run([tfmp, "run", path, "--input", f"{key}={array}", "--repeat", str(repeat)],
                            capture_output=True, text=True, check=True)
    return float(re.search(r"median of \d+ runs: ([0-9.]+) ms", result.stdout).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    subprocess.run(["swift", "build", "-c", "release", "--product", "tfmp"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    tfmp = os.path.join(ROOT, ".build", "release", "tfmp")
    resnet = os.path.join(ROOT, "bench-work", "resnet50")
    bert = os.path.join(ROOT, "bench-work", "bert_base")
    for path, flag in ((resnet, "--resnet50"), (bert, "--bert-base")):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "make_fixtures.py"), flag, path], check=True)
    rng = np.random.default_rng(0)
    # (name, model, input, item shape, runs at each batch size)
    big = max(3, args.repeat // 2)
    cases = [("digits CNN", os.path.join(ROOT, "Examples", "digits"), "image", (8, 8, 1), {1: args.repeat, 32: args.repeat}),
             ("ResNet50", resnet, "keras_tensor", (224, 224, 3), {1: big, 32: 3}),
             ("BERT-base", bert, "input_ids", (128,), {1: big, 32: 3})]
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'model':12s} {'batch':>5s} {'precision':9s} {'tfmp ms':>9s} {'TF ms':>9s} {'tfmp items/s':>13s} {'TF items/s':>11s}  tfmp/TF")
        for name, path, key, shape, batches in cases:
            converted = os.path.join(folder, name.replace(" ", "_") + "-float16")
            subprocess.run([tfmp, "convert", path, converted], check=True, stdout=subprocess.DEVNULL)
            for batch, runs in batches.items():
                x = (rng.integers(0, 30522, (batch, *shape)).astype("int32") if key == "input_ids"
                     else rng.random((batch, *shape)).astype("float32"))
                for precision, model in (("float32", path), ("float16", converted)):
                    ours = tfmp_median_ms(tfmp, model, key, x, runs, folder)
                    theirs = tf_median_ms(model, key, x, runs)
                    print(f"{name:12s} {batch:5d} {precision:9s} {ours:9.2f} {theirs:9.2f} "
                          f"{1000 * batch / ours:13.1f} {1000 * batch / theirs:11.1f}  {theirs / ours:6.2f}x")


if __name__ == "__main__":
    main()
