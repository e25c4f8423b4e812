#!/usr/bin/env python3
"""Compares this checkout's `tfmp` with the `tfmp` of another commit, side by side in one run:

1. `tfmp convert` of every fixture, the example and the Keras fixtures, under both policies and
   both weight modes (and with --no-keep-io-types, compared up to node order): the outputs must
   be byte-identical, or both refuse with the same message (a redesign changes no behaviour);
2. `tfmp run --repeat N` on the fixtures and the example: medians of interleaved runs and the
   ratio new / old (1.00 is equal; these machines are noisy, so read ratios within ~10% as equal);
3. with `--big`, the same for ResNet50 and BERT-base (bench-work/, made as Benchmarks/runtime.py
   makes them): conversions byte-identical, `tfmp convert` wall time, and `tfmp run` at batch 1
   in float32 and on the float16 conversion.

Usage: .venv/bin/python Scripts/compare-with-commit.py COMMIT [--repeat 30] [--rounds 5] [--big]
Builds both in release mode (the other commit in a worktree under bench-work/).
"""
import argparse
import filecmp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "_TestSupport", "Fixtures")
SAVED_MODELS = ["mlp", "cnn_bn", "depthwise", "attention", "lstm", "two_io", "custom_math", "sharded", "op_zoo"]
KERAS = ["keras_dense", "keras_cnn", "keras_attention", "keras_lstm", "keras_nested"]


def build(folder):
    subprocess.run(["swift", "build", "-c", "release", "--product", "tfmp"], cwd=folder, check=True,
                   stdout=subprocess.DEVNULL)
    return os.path.join(folder, ".build", "release", "tfmp")


def same_tree(a, b):
    comparison = filecmp.dircmp(a, b)
    if comparison.left_only or comparison.right_only or comparison.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, comparison.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(os.path.join(a, d), os.path.join(b, d))
                                               for d in comparison.common_dirs)


def same_model_ignoring_node_order(a, b):
    """Whether two SavedModels hold the same checkpoint and the same graph up to the order of
    nodes in each body (commits before the GraphIR converter added --no-keep-io-types casts in
    an order that changed from run to run)."""
    from tensorflow.core.protobuf import saved_model_pb2

    def normalized(folder):
        model = saved_model_pb2.SavedModel()
        with open(os.path.join(folder, "saved_model.pb"), "rb") as file:
            model.ParseFromString(file.read())
        for meta_graph in model.meta_graphs:
            graph = meta_graph.graph_def
            nodes = sorted(graph.node, key=lambda node: node.name)
            del graph.node[:]
            graph.node.extend(nodes)
            for function in graph.library.function:
                nodes = sorted(function.node_def, key=lambda node: node.name)
                del function.node_def[:]
                function.node_def.extend(nodes)
        return model.SerializeToString(deterministic=True)

    return same_tree(os.path.join(a, "variables"), os.path.join(b, "variables")) and normalized(a) == normalized(b)


def compare_conversions(old, new, work):
    cases = [(os.path.join(FIXTURES, name), name) for name in SAVED_MODELS]
    cases.append((os.path.join(ROOT, "Examples", "digits"), "digits"))
    differences = 0
    count = 0
    for path, name in cases:
        for policy in ["mixed_float16", "mixed_bfloat16"]:
            for weights in ["auto", "float32", "auto --no-keep-io-types"]:
                outputs, errors = [], []
                for label, binary in [("old", old), ("new", new)]:
                    out = os.path.join(work, f"{name}-{policy}-{weights.replace(' ', '')}-{label}")
                    result = subprocess.run([binary, "convert", "--force", "--policy", policy, "--weights", *weights.split(),
                                             path, out], capture_output=True, text=True)
                    outputs.append(out)
                    errors.append((result.returncode, result.stderr if result.returncode else ""))
                count += 1
                # A model both refuse the same way (a signature --no-keep-io-types cannot retype) agrees.
                agree = same_model_ignoring_node_order if "--no-keep-io-types" in weights else same_tree
                same = errors[0] == errors[1] and (errors[0][0] != 0 or agree(*outputs))
                if not same:
                    differences += 1
                    print(f"  DIFFERENT: {name} {policy} {weights}: {errors}")
    for name in KERAS:
        for policy in ["mixed_float16", "mixed_bfloat16"]:
            outputs = []
            for label, binary in [("old", old), ("new", new)]:
                out = os.path.join(work, f"{name}-{policy}-{label}.keras")
                subprocess.run([binary, "convert", "--force", "--policy", policy, os.path.join(FIXTURES, name + ".keras"),
                                out], check=True, stdout=subprocess.DEVNULL)
                outputs.append(out)
            count += 1
            if not filecmp.cmp(*outputs, shallow=False):
                differences += 1
                print(f"  DIFFERENT: {name} {policy}")
    print(f"conversions: {count - differences} of {count} agree (byte-identical; --no-keep-io-types up to node order)")
    return differences == 0


def run_time(binary, model, inputs, repeat):
    result = subprocess.run([binary, "run", model, *inputs, "--repeat", str(repeat)], check=True,
                            capture_output=True, text=True)
    match = re.search(r"median of \d+ runs: ([0-9.]+) ms", result.stdout + result.stderr)
    if not match:
        sys.exit(f"no timing in the output of tfmp run: {result.stdout} {result.stderr}")
    return float(match.group(1))


def compare_runs(old, new, work, repeat, rounds):
    cases = []
    for name in SAVED_MODELS:
        with np.load(os.path.join(FIXTURES, f"{name}.inputs.npz")) as arrays:
            inputs = []
            for key in arrays.files:
                path = os.path.join(work, f"{name}.{key}.npy")
                np.save(path, arrays[key])
                inputs += ["--input", f"{key}={path}"]
        cases.append((name, os.path.join(FIXTURES, name), inputs))
    digits = ["--input", "image=" + os.path.join(ROOT, "Examples", "digits-sample.npy")]
    cases.append(("digits", os.path.join(ROOT, "Examples", "digits"), digits))
    converted = os.path.join(work, "digits-mixed_float16-auto-new")
    cases.append(("digits float16", converted, digits))
    print(f"tfmp run --repeat {repeat}, median of {rounds} interleaved rounds (ms):")
    print(f"  {'model':16} {'old':>9} {'new':>9} {'new/old':>8}")
    ratios = []
    for name, model, inputs in cases:
        times = {"old": [], "new": []}
        for _ in range(rounds):
            for label, binary in [("old", old), ("new", new)]:
                times[label].append(run_time(binary, model, inputs, repeat))
        a, b = statistics.median(times["old"]), statistics.median(times["new"])
        ratios.append(b / a)
        print(f"  {name:16} {a:9.3f} {b:9.3f} {b / a:8.2f}")
    print(f"  geometric mean of new/old: {statistics.geometric_mean(ratios):.2f}")


def compare_big(old, new, work, rounds):
    rng = np.random.default_rng(0)
    cases = [("ResNet50", "resnet50", "--resnet50", "keras_tensor", rng.random((1, 224, 224, 3)).astype("float32")),
             ("BERT-base", "bert_base", "--bert-base", "input_ids", rng.integers(0, 30522, (1, 128)).astype("int32"))]
    identical = True
    print(f"big models, median of {rounds} interleaved rounds:")
    print(f"  {'measure':28} {'old':>9} {'new':>9} {'new/old':>8}")
    for name, folder, flag, key, x in cases:
        model = os.path.join(ROOT, "bench-work", folder)
        if not os.path.exists(os.path.join(model, "saved_model.pb")):
            subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "make_fixtures.py"), flag, model], check=True)
        array = os.path.join(work, f"{folder}.npy")
        np.save(array, x)
        seconds = {"old": [], "new": []}
        for _ in range(rounds):
            for label, binary in [("old", old), ("new", new)]:
                start = time.perf_counter()
                subprocess.run([binary, "convert", "--force", model, os.path.join(work, f"{folder}-{label}")], check=True,
                               stdout=subprocess.DEVNULL)
                seconds[label].append(1000 * (time.perf_counter() - start))
        if not same_tree(os.path.join(work, f"{folder}-old"), os.path.join(work, f"{folder}-new")):
            identical = False
            print(f"  DIFFERENT: {name} conversion")
        rows = [(f"{name} convert (ms, process)", seconds)]
        for precision, path in [("float32", model), ("float16", os.path.join(work, f"{folder}-new"))]:
            times = {"old": [], "new": []}
            for _ in range(rounds):
                for label, binary in [("old", old), ("new", new)]:
                    times[label].append(run_time(binary, path, ["--input", f"{key}={array}"], 5))
            rows.append((f"{name} run {precision} (ms)", times))
        for label, values in rows:
            a, b = statistics.median(values["old"]), statistics.median(values["new"])
            print(f"  {label:28} {a:9.1f} {b:9.1f} {b / a:8.2f}")
    return identical


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("commit")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big", action="store_true", help="also ResNet50 and BERT-base")
    arguments = parser.parse_args()
    worktree = os.path.join(ROOT, "bench-work", "baseline")
    if os.path.exists(worktree):
        subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT, check=True)
    subprocess.run(["git", "worktree", "add", "--detach", worktree, arguments.commit], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    old, new = build(worktree), build(ROOT)
    with tempfile.TemporaryDirectory() as work:
        identical = compare_conversions(old, new, work)
        compare_runs(old, new, work, arguments.repeat, arguments.rounds)
        if arguments.big:
            identical = compare_big(old, new, work, arguments.rounds) and identical
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
