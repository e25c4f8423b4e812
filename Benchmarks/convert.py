#!/usr/bin/env python3
"""Benchmark: `tfmp convert` against TFLite's and tf2onnx + onnxconverter-common's float16 conversion.

  .venv/bin/python Benchmarks/convert.py [--runs 3] [--peer-runs 1] [--models bert_base,resnet50]

For a BERT-base-sized encoder and ResNet50 (random weights; made once in bench-work/ by
Scripts/make_fixtures.py, not committed), prints the wall time and peak resident memory of each
whole process, medians over runs, and the ratios:
  - tfmp convert (release build, float16, --weights auto);
  - tfmp resave of the same model: reading and writing the same bytes;
  - TFLite: TFLiteConverter.from_saved_model with float16 weights (Optimize.DEFAULT);
  - tf2onnx.convert, then onnxconverter_common.float16.convert_float_to_float16 (keep_io_types).
The peers run in their own virtual environment, bench-work/venv (made on first use).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

import peers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench-work")

TFLITE = """
import sys, tensorflow as tf
converter = tf.lite.TFLiteConverter.from_saved_model(sys.argv[1])
converter.optimizations = [tf.lite.Optimize.DEFAULT]
converter.target_spec.supported_types = [tf.float16]
open(sys.argv[2], "wb").write(converter.convert())
"""
ONNX_FLOAT16 = """
import sys, onnx
from onnxconverter_common import float16
model = float16.convert_float_to_float16(onnx.load(sys.argv[1]), keep_io_types=True)
onnx.save(model, sys.argv[2])
"""


def measure(command):
    """Runs command; returns (wall seconds, peak RSS in MiB) of that process alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        sys.exit(f"{' '.join(command)} failed with status {status}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def folder_mib(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 2**20


def median_run(commands, runs, cleanup):
    """Median over runs of the summed wall time and the largest peak RSS of a command sequence."""
    samples = []
    for _ in range(runs):
        cleanup()
        measured = [measure(command) for command in commands]
        samples.append((sum(m[0] for m in measured), max(m[1] for m in measured)))
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peer-runs", type=int, default=1)
    parser.add_argument("--models", default="bert_base,resnet50")
    args = parser.parse_args()
    os.makedirs(WORK, exist_ok=True)
    peer_python = peers.peer_python()
    subprocess.run(["swift", "build", "-c", "release", "--product", "tfmp"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    tfmp = os.path.join(ROOT, ".build", "release", "tfmp")
    out = os.path.join(WORK, "out")

    for name in args.models.split(","):
        model = os.path.join(WORK, name)
        if not os.path.exists(os.path.join(model, "saved_model.pb")):
            subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "make_fixtures.py"),
                            "--" + name.replace("_", "-"), model], check=True)
        size = folder_mib(model)

        def clean():
            shutil.rmtree(out, ignore_errors=True)
            os.makedirs(out)

        rows = {
            "tfmp convert": median_run([[tfmp, "convert", model, os.path.join(out, "m")]], args.runs, clean),
            "tfmp resave (read+write)": median_run([[tfmp, "resave", model, os.path.join(out, "m")]], args.runs, clean),
            "TFLite float16": median_run(
                [[peer_python, "-c", TFLITE, model, os.path.join(out, "m.tflite")]], args.peer_runs, clean),
            "tf2onnx + onnxconverter-common": median_run(
                [[peer_python, "-m", "tf2onnx.convert", "--saved-model", model, "--opset", "17",
                  "--output", os.path.join(out, "m.onnx")],
                 [peer_python, "-c", ONNX_FLOAT16, os.path.join(out, "m.onnx"), os.path.join(out, "m16.onnx")]],
                args.peer_runs, clean),
        }
        shutil.rmtree(out, ignore_errors=True)
        print(f"\n{name}: SavedModel {size:.0f} MiB (tfmp medians of {args.runs} runs, peers of {args.peer_runs})")
        ours = rows["tfmp convert"][0]
        for label, (wall, rss) in rows.items():
            ratio = "" if label == "tfmp convert" else f"   {wall / ours:6.1f}x tfmp's time"
            print(f"  {label:32s} {wall:8.2f} s   peak RSS {rss:7.0f} MiB{ratio}")
        print(f"  tfmp peak RSS is {rows['tfmp convert'][1] / size:.2f} of the model's size")


if __name__ == "__main__":
    main()
