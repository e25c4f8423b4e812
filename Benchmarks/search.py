#!/usr/bin/env python3
"""Benchmark: the accuracy search of `tfmp convert --tolerance` against onnxconverter-common's
`auto_convert_mixed_precision` and NVIDIA ModelOpt's AutoCast (the model through tf2onnx), same
calibration inputs, same tolerance.

  .venv/bin/python Benchmarks/search.py [--models mobilenet_v2,distilbert_tiny] [--fraction 0.5]

For each zoo model (Scripts/zoo.py makes them in bench-work/zoo/), the tolerance is max_abs = the
error of tfmp's list-based float16 conversion on the zoo's inputs times FRACTION, so that both
searches have work to do. Prints, per tool: wall time of the search (tfmp: the whole `convert`
process, reading, verifying and writing included, the median of three runs, without `--report`,
which profiles the result in a run of its own; onnxconverter-common: the `auto_convert_mixed_precision`
call alone, tf2onnx excluded), model runs, nodes the search kept float32, and the error its
result gives on the calibration inputs against TensorFlow's float32 outputs (tfmp's result
served by TensorFlow, and as tfmp's runtime measured it; the ONNX result run by onnxruntime), and
how many matrix ops (MatMul, Conv,
Einsum; ONNX: MatMul, Gemm, Conv) compute in float32. AutoCast keeps float32 every node whose input
or output magnitude exceeds a threshold: swept from its default 512 down by fours until the
tolerance holds, the time being the whole sweep's. The peers run in bench-work/venv; AutoCast is
`nvidia-modelopt[onnx]` (a large install: torch and CUDA wheels), installed there on first use.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

import peers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench-work")

ONNX_SEARCH = r"""
import json, sys, time
import numpy as np, onnx
from onnxconverter_common import auto_mixed_precision, float16
model_path, inputs_path, tolerance, reference_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
with np.load(inputs_path) as data:
    feed = {k: data[k] for k in data.files}
model = onnx.load(model_path)
names = [i.name for i in model.graph.input]
feed = {name: feed[name.split(":")[0]] for name in names}
runs, blocked = [0], [[]]
run = auto_mixed_precision.get_tensor_values_using_ort
def counted(*args, **kwargs):
    runs[0] += 1
    return run(*args, **kwargs)
auto_mixed_precision.get_tensor_values_using_ort = counted
convert = float16.convert_float_to_float16
def recorded(*args, **kwargs):
    blocked[0] = list(kwargs.get("node_block_list") or [])
    return convert(*args, **kwargs)
auto_mixed_precision.float16.convert_float_to_float16 = recorded
validate = lambda a, b: all(np.max(np.abs(x.astype(np.float64) - y)) <= tolerance for x, y in zip(a, b))
start = time.perf_counter()
result = auto_mixed_precision.auto_convert_mixed_precision(model, feed, validate, keep_io_types=True)
seconds = time.perf_counter() - start
import onnxruntime as ort
outputs = ort.InferenceSession(result.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
with np.load(reference_path) as data:
    reference = [data[k] for k in data.files]
error = max(float(np.max(np.abs(o.astype(np.float64) - r))) for o, r in zip(outputs, reference))
matrix = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum"}
types = {n.name: n.op_type for n in model.graph.node}
print(json.dumps({"seconds": seconds, "runs": runs[0], "kept": len(blocked[0]), "nodes": len(model.graph.node),
                  "error": error, "matrix_kept": sum(1 for n in blocked[0] if types.get(n) in matrix),
                  "matrix": sum(1 for t in types.values() if t in matrix)}))
"""

# NVIDIA ModelOpt's AutoCast: every node with an input or output magnitude above data_max stays
# float32. Swept from its default 512 down by fours until the tolerance holds on the calibration
# inputs (onnxruntime against TensorFlow's outputs); the time is the whole sweep's.
AUTOCAST = r"""
import json, sys, time
import numpy as np, onnx, onnxruntime as ort
from modelopt.onnx.autocast import convert_to_mixed_precision
from modelopt.onnx.autocast import convert as autocast
model_path, inputs_path, tolerance, reference_path, scratch = sys.argv[1:6]
tolerance = float(tolerance)
model = onnx.load(model_path)
with np.load(inputs_path) as data:
    feed = {i.name: data[i.name.split(":")[0]] for i in model.graph.input}
calibration = scratch + "/autocast-calibration.npz"
np.savez(calibration, **feed)
with np.load(reference_path) as data:
    reference = [data[k] for k in data.files]
kept = [[]]
classify = autocast.NodeClassifier.run
def recorded(self, *args, **kwargs):
    low, high = classify(self, *args, **kwargs)
    kept[0] = list(high)
    return low, high
autocast.NodeClassifier.run = recorded
matrix = {"MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum"}
types = {n.name: n.op_type for n in model.graph.node}
start, tries = time.perf_counter(), 0
for threshold in (512, 128, 32, 8, 2, 0.5, 0.125, 0):
    tries += 1
    result = convert_to_mixed_precision(model_path, "fp16", data_max=threshold, keep_io_types=True,
                                        calibration_data=calibration, providers=["cpu"])
    outputs = ort.InferenceSession(result.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)
    error = max(float(np.max(np.abs(o.astype(np.float64) - r))) for o, r in zip(outputs, reference))
    if error <= tolerance:
        break
print(json.dumps({"seconds": time.perf_counter() - start, "tries": tries, "threshold": threshold,
                  "kept": len(kept[0]), "nodes": len(model.graph.node), "error": error, "met": error <= tolerance,
                  "matrix_kept": sum(1 for n in kept[0] if types.get(n) in matrix),
                  "matrix": sum(1 for t in types.values() if t in matrix)}))
"""

MATRIX_OPS = {"MatMul", "BatchMatMulV2", "BatchMatMulV3", "Conv2D", "Conv3D", "DepthwiseConv2dNative",
              "Einsum", "Conv2DBackpropInput"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mobilenet_v2,distilbert_tiny")
    parser.add_argument("--fraction", type=float, default=0.5)
    args = parser.parse_args()
    peer = peers.peer_python()
    subprocess.run(["swift", "build", "-c", "release", "--product", "tfmp"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    tfmp = os.path.join(ROOT, ".build", "release", "tfmp")
    sys.path.insert(0, os.path.join(ROOT, "Scripts"))
    import zoo
    folder = os.path.join(WORK, "zoo")
    subprocess.run([sys.executable, os.path.join(ROOT, "Scripts", "zoo.py"), "--only", *args.models.split(",")],
                   check=True, stdout=subprocess.DEVNULL)
    autocast = subprocess.run([peer, "-c", "import modelopt.onnx.autocast"], capture_output=True).returncode == 0
    if not autocast:
        subprocess.run([peer, "-m", "pip", "install", "-q", "nvidia-modelopt[onnx]"], check=False)
        autocast = subprocess.run([peer, "-c", "import modelopt.onnx.autocast"],
                                  capture_output=True).returncode == 0
    print("ModelOpt AutoCast: " + ("installed" if autocast else "nvidia-modelopt[onnx] does not import in the "
                                   "peer environment; its column is left out"))
    print("| model | tolerance (max_abs) | tfmp: time, model runs, kept float32, matrix ops float32, error "
          "(TensorFlow serving it; tfmp's runtime) | "
          "onnxconverter-common: time, model runs, kept float32 (of nodes), matrix ops float32, error | time ratio | "
          "AutoCast: sweep time, threshold met, kept float32 (of nodes), matrix ops float32, error |")
    print("|---|---|---|---|---|---|")
    for name in args.models.split(","):
        model = os.path.join(folder, name)
        calibration = os.path.join(folder, name + ".inputs.npz")
        inputs = zoo.zoo_inputs(folder, name)
        reference = zoo.serve(model, inputs)
        keys = sorted(reference)
        with tempfile.TemporaryDirectory() as scratch:
            lists = os.path.join(scratch, "lists")
            subprocess.run([tfmp, "convert", model, lists, "--no-verify"], check=True, capture_output=True)
            lists_error = max(float(np.max(np.abs(v.astype(np.float64) - reference[k])))
                              for k, v in zoo.serve(lists, inputs).items())
            tolerance = lists_error * args.fraction
            searched = os.path.join(scratch, "searched")
            command = [tfmp, "convert", model, searched, "--calibration", calibration,
                       "--tolerance", f"max_abs={tolerance}"]
            times = []
            for _ in range(3):  # the median of three
                start = time.perf_counter()
                result = subprocess.run(command + ["--force"], capture_output=True, text=True)
                times.append(time.perf_counter() - start)
                if result.returncode != 0:
                    sys.exit(result.stderr)
            ours_seconds = float(np.median(times))
            # The report (which profiles the result: four more runs per signature), untimed.
            subprocess.run(command + ["--force", "--report", searched + ".json"], check=True, capture_output=True)
            runs = int(re.search(r"model runs: (\d+)", result.stdout).group(1))
            # The error tfmp's runtime measured on the result (the search's own judgement).
            judged = re.search(r"^  (?:NOT )?met: (.*)$", result.stdout, re.M)
            ours_judged = max((float(v) for v in re.findall(r"max_abs ([0-9.e+-]+)", judged.group(1))),
                              default=float("nan")) if judged else float("nan")
            kept = re.search(r"kept float32 \((\d+)\)", result.stdout)
            report = json.load(open(searched + ".json"))
            matrix = [n for n in report["nodes"] if n["op"] in MATRIX_OPS]
            ours_matrix = f"{sum(1 for n in matrix if n['precision'] == 'float32')} of {len(matrix)}"
            ours_error = max(float(np.max(np.abs(v.astype(np.float64) - reference[k])))
                             for k, v in zoo.serve(searched, inputs).items())
            onnx_model = os.path.join(scratch, "model.onnx")
            subprocess.run([peer, "-m", "tf2onnx.convert", "--saved-model", model, "--output", onnx_model],
                           check=True, capture_output=True)
            reference_path = os.path.join(scratch, "reference.npz")
            np.savez(reference_path, **{f"{i:03d}": reference[k] for i, k in enumerate(keys)})
            peer_result = subprocess.run([peer, "-c", ONNX_SEARCH, onnx_model, calibration, str(tolerance),
                                          reference_path], capture_output=True, text=True)
            autocast_facts = "not installed"
            if autocast:
                autocast_result = subprocess.run([peer, "-c", AUTOCAST, onnx_model, calibration, str(tolerance),
                                                  reference_path, scratch], capture_output=True, text=True)
                if autocast_result.returncode != 0:
                    autocast_facts = f"failed: {autocast_result.stderr.strip().splitlines()[-1][:300]}"
                else:
                    facts = json.loads(autocast_result.stdout.strip().splitlines()[-1])
                    autocast_facts = (f"{facts['seconds']:.1f} s, {facts['threshold'] if facts['met'] else 'none'}, "
                                      f"{facts['kept']} (of {facts['nodes']}), "
                                      f"{facts['matrix_kept']} of {facts['matrix']}, {facts['error']:.2e}")
            if peer_result.returncode != 0:
                theirs = f"failed: {peer_result.stderr.strip().splitlines()[-1][:300]}"
                ratio = "-"
            else:
                facts = json.loads(peer_result.stdout.strip().splitlines()[-1])
                theirs = (f"{facts['seconds']:.1f} s, {facts['runs']}, {facts['kept']} (of {facts['nodes']}), "
                          f"{facts['matrix_kept']} of {facts['matrix']}, {facts['error']:.2e}")
                ratio = f"{facts['seconds'] / ours_seconds:.1f}x"
        print(f"| {name} | {tolerance:.2e} | {ours_seconds:.1f} s, {runs}, {kept.group(1) if kept else 0}, "
              f"{ours_matrix}, {ours_error:.2e} (tfmp's runtime: {ours_judged:.2e}) | {theirs} | {ratio} | "
              f"{autocast_facts} |", flush=True)


if __name__ == "__main__":
    main()
