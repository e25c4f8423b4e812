#!/usr/bin/env python3
"""Benchmark: read and re-write a large SavedModel's checkpoint, next to a plain file copy.

  .venv/bin/python Benchmarks/checkpoint_io.py [--runs 3] [--work bench-work]

Makes a BERT-base-sized Keras export with random weights (Scripts/make_fixtures.py --bert-base,
not committed; ~880 MB on disk because Keras stores every weight twice) unless it exists, builds
tfmp in release mode, then times `tfmp resave` (reads the whole model, verifies every CRC32C,
rewrites saved_model.pb and the checkpoint tensor by tensor) and `cp -r` of the same folder.
Prints the median wall time and peak resident memory of each and their ratio.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(command):
    """Runs command; returns (wall seconds, peak RSS in MiB) of that process alone."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        sys.exit(f"{' '.join(command)} failed with status {status}")
    return elapsed, usage.ru_maxrss / 1024


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", default=os.path.join(ROOT, "bench-work"))
    args = parser.parse_args()
    model = os.path.join(args.work, "bert_base")
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        os.makedirs(args.work, exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "make_fixtures.py"),
                        "--bert-base", model], check=True)
    subprocess.run(["swift", "build", "-c", "release", "--product", "tfmp"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    tfmp = os.path.join(ROOT, ".build", "release", "tfmp")
    checkpoint = folder_bytes(os.path.join(model, "variables"))
    total = folder_bytes(model)
    print(f"model: {model}\n  {total / 2**20:.1f} MiB in all, checkpoint {checkpoint / 2**20:.1f} MiB")

    results = {"tfmp resave": [], "cp -r": []}
    for run in range(args.runs):
        for name, command in (("tfmp resave", [tfmp, "resave", "--force", model]),
                              ("cp -r", ["cp", "-r", model])):
            out = os.path.join(args.work, "out-" + name.split()[0])
            shutil.rmtree(out, ignore_errors=True)
            results[name].append(measure(command + [out]))
            shutil.rmtree(out, ignore_errors=True)
    print(f"median of {args.runs} runs:")
    for name, samples in results.items():
        wall = statistics.median(s[0] for s in samples)
        rss = statistics.median(s[1] for s in samples)
        print(f"  {name:12s} {wall:7.2f} s   peak RSS {rss:7.1f} MiB   "
              f"{total / 2**20 / wall:7.0f} MiB/s   (runs: {', '.join(f'{s[0]:.2f}' for s in samples)})")
    ratio = statistics.median(s[0] for s in results["tfmp resave"]) / statistics.median(s[0] for s in results["cp -r"])
    print(f"tfmp resave / cp -r wall time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
