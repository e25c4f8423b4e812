"""Interop tests for the accuracy search (`tfmp convert --tolerance`): on models built to need it,
the search meets the tolerance on the calibration inputs, and TensorFlow confirms it, in both
loaders, on separate check inputs drawn the same way; where the lists suffice it keeps nothing."""
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from test_interop import FIXTURES, run_tf1, run_tf2, sample, tfmp


def save_module(path, compute, width, variables):
    """A tf.Module holding `variables` and computing `compute(x)` for x of shape [None, width],
    saved with its signature."""
    module = tf.Module()
    module.variables_ = variables
    module.f = tf.function(compute, input_signature=[tf.TensorSpec([None, width], tf.float32, name="x")])
    tf.saved_model.save(module, path, signatures={"serving_default": module.f})


def overflow_only_on_real_data(path):
    """Pixel-like inputs (50 to 100) times weights of about 30 over 64 terms: the product's sums
    reach about 1.4e5, beyond float16's 65504, which random normal inputs never reach."""
    rng = np.random.default_rng(11)
    w = tf.Variable(rng.uniform(20, 40, (64, 32)).astype(np.float32))
    v = tf.Variable(rng.standard_normal((32, 8)).astype(np.float32))
    save_module(path, lambda x: {"y": tf.matmul(tf.tanh(tf.matmul(x, w) * 1e-5), v)}, 64, [w, v])

    def draw(seed):
        return {"x": np.random.default_rng(seed).uniform(50, 100, (16, 64)).astype(np.float32)}
    return draw


def cancellation(path):
    """Two products of nearly equal weights, subtracted: in float16 each product's rounding is
    far larger than their difference, so the two MatMuls' own errors dominate the output."""
    rng = np.random.default_rng(12)
    w1 = rng.standard_normal((32, 32)).astype(np.float32)
    w2 = w1 + 1e-3 * rng.standard_normal((32, 32)).astype(np.float32)
    a, b = tf.Variable(w1), tf.Variable(w2)
    u = tf.Variable(rng.standard_normal((32, 32)).astype(np.float32) * 0.2)
    save_module(path, lambda x: {"y": tf.matmul(tf.nn.relu(tf.matmul(x, u)), u)
                                 + (tf.matmul(x, a) - tf.matmul(x, b)) * 100.0}, 32, [a, b, u])

    def draw(seed):
        return {"x": np.random.default_rng(seed).standard_normal((16, 32)).astype(np.float32)}
    return draw


def embedding(path):
    """Two embeddings of the tokens, summed and normalized as an encoder's first layer does:
    under --weights auto the tables are stored in float16, which rounds every embedding (on
    keras-hub's BERT this is most of the float16 error of the sequence output)."""
    import keras
    keras.utils.set_random_seed(13)
    ids = keras.Input((12,), dtype="int32", name="x")
    x = keras.layers.Embedding(200, 32)(ids) + keras.layers.Embedding(200, 32)(ids)
    keras.Model(ids, {"y": keras.layers.LayerNormalization(epsilon=1e-6)(x)}).export(path, verbose=False)

    def draw(seed):
        return {"x": np.random.default_rng(seed).integers(0, 200, (8, 12)).astype(np.int32)}
    return draw


def large_activations(path):
    """A regression net on raw pixel-scale inputs (0 to 255, no rescaling): its activations run
    past AutoCast's 512, yet float16 holds them to its usual relative precision."""
    import keras
    keras.utils.set_random_seed(14)
    x = keras.Input((256,), name="x")
    h = keras.layers.Dense(64, activation="relu")(x)
    h = keras.layers.Dense(64, activation="relu")(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    keras.Model(x, {"y": keras.layers.Dense(4)(h)}).export(path, verbose=False)

    def draw(seed):
        return {"x": np.random.default_rng(seed).uniform(0, 255, (16, 256)).astype(np.float32)}
    return draw


def served_error(model, original, inputs):
    """The largest |converted - original| TensorFlow gives, in either loader."""
    reference = run_tf2(original, inputs)["y"]
    errors = []
    for loader in (run_tf2, run_tf1):
        value = loader(model, inputs)["y"]
        assert value.dtype == np.float32 and np.all(np.isfinite(value))
        errors.append(float(np.max(np.abs(value.astype(np.float64) - reference))))
    return max(errors)


@pytest.mark.parametrize("build,policy", [(overflow_only_on_real_data, "mixed_float16"),
                                          (cancellation, "mixed_float16"), (cancellation, "mixed_bfloat16"),
                                          (embedding, "mixed_float16")])
def test_search_meets_the_tolerance_and_tensorflow_confirms_it(tmp_path, build, policy):
    original = str(tmp_path / "original")
    draw = build(original)
    calibration, check = str(tmp_path / "calibration.npz"), draw(2)
    np.savez(calibration, **draw(1))
    if build is overflow_only_on_real_data and policy == "mixed_float16":
        # The lists convert the product, which overflows on these inputs (its tanh then
        # saturates): verification refuses, naming it.
        refused = tfmp("convert", original, str(tmp_path / "refused"), "--calibration", calibration)
        assert refused.returncode == 2 and "first go wrong at node 'MatMul'" in refused.stderr, refused.stderr
    lists = str(tmp_path / "lists")
    plain = tfmp("convert", original, lists, "--policy", policy, "--no-verify")
    assert plain.returncode == 0, plain.stderr
    with np.load(calibration) as data:
        inputs = {k: data[k] for k in data.files}
    # A tenth of the lists' error.
    tolerance = served_error(lists, original, inputs) / 10
    searched = str(tmp_path / "searched")
    result = tfmp("convert", original, searched, "--policy", policy, "--calibration", calibration,
                  "--tolerance", f"max_abs={tolerance}", "--report", searched + ".json")
    assert result.returncode == 0, result.stderr
    assert "met: " in result.stdout and "kept float32 (" in result.stdout, result.stdout
    report = json.load(open(searched + ".json"))
    if build is embedding:
        # What errs is the rounding of the tables: the search keeps their lookups float32, so
        # the tables stay float32.
        lines = [l for l in result.stdout.split("kept float32 (")[1].split("met: ")[0].splitlines()[1:] if l.strip()]
        assert lines and all(line.strip().startswith("GatherV2") for line in lines), lines
        tables = [v for v in report["variables"] if "embeddings" in v["name"]]
        assert tables and all(v["dtype"] == "float32" for v in tables), tables
    else:
        kept = [n for n in report["nodes"] if n["reason"] == "kept float32 by the accuracy search"]
        assert kept and all(n["op"] == "MatMul" for n in kept), kept
        # Fewer than every product: the search keeps only what the tolerance needs.
        products = [n for n in report["nodes"] if n["op"] == "MatMul"]
        assert len(kept) < len(products)
        assert any(n["precision"] != "float32" for n in products)
    # TensorFlow confirms it on the calibration inputs and on separate check inputs.
    assert served_error(searched, original, inputs) <= tolerance
    assert served_error(searched, original, check) <= tolerance


def test_search_keeps_nothing_when_the_lists_suffice(tmp_path):
    original = os.path.join(FIXTURES, "mlp")
    out = str(tmp_path / "out")
    result = tfmp("convert", original, out, "--tolerance", "max_abs=1e-2", "--tolerance", "top1_agreement=1",
                  "--calibration", os.path.join(FIXTURES, "mlp.inputs.npz"))
    assert result.returncode == 0, result.stderr
    assert "kept float32: nothing more" in result.stdout, result.stdout
    assert "conversions tried: 1," in result.stdout
    inputs = sample("mlp", "inputs")
    reference = run_tf2(original, inputs)
    for key, value in run_tf2(out, inputs).items():
        assert np.max(np.abs(value - reference[key])) <= 1e-2


def test_a_tolerance_that_cannot_be_read_is_refused(tmp_path):
    out = str(tmp_path / "out")
    for bad, why in [("mse=1", "METRIC=VALUE"), ("cosine=2", "at most 1"), ("max_abs=-1", "non-negative")]:
        result = tfmp("convert", os.path.join(FIXTURES, "mlp"), out, "--tolerance", bad)
        assert result.returncode == 64 and why in result.stderr, result.stderr
        assert not os.path.exists(out)


def float32_count(report, reduced_by_lists):
    """How many of the nodes the lists compute in the reduced type `report`'s conversion keeps
    float32 (a function left with no reduced op lists none of its nodes: all float32)."""
    precision = {(n["function"], n["name"]): n["precision"] for n in report["nodes"]}
    return sum(1 for node in reduced_by_lists if precision.get(node, "float32") == "float32")


@pytest.mark.parametrize("build,policy,factor", [(overflow_only_on_real_data, "mixed_float16", 0.1),
                                                 (cancellation, "mixed_float16", 0.1),
                                                 (cancellation, "mixed_bfloat16", 0.1),
                                                 (large_activations, "mixed_float16", 2),
                                                 (large_activations, "mixed_float16", 0.5)])
def test_search_keeps_no_more_float32_than_whole_layers_or_autocast_thresholds(tmp_path, build, policy, factor):
    """The two ways peers choose what stays float32, each given the same tolerance and calibration
    inputs, with TensorFlow judging every conversion: keeping whole layers, the most sensitive first
    (Polygraphy-style bisection over layers), and AutoCast's rule, every node with an input or output
    magnitude above a threshold, from its default 512 down by fours until the tolerance is met."""
    original, calibration = str(tmp_path / "original"), str(tmp_path / "calibration.npz")
    np.savez(calibration, **build(original)(1))
    with np.load(calibration) as data:
        inputs = {k: data[k] for k in data.files}

    def convert(name, *options):
        out = str(tmp_path / name)
        result = tfmp("convert", original, out, "--policy", policy, "--calibration", calibration,
                      "--report", out + ".json", "--force", *options)
        assert result.returncode == 0, result.stderr
        error = float(np.max(np.abs(run_tf2(out, inputs)["y"].astype(np.float64) - run_tf2(original, inputs)["y"])))
        return json.load(open(out + ".json")), error

    def keeping(name, nodes):
        return convert(name, "--no-verify", *[a for n in nodes for a in ("--fp32-node", "^" + re.escape(n) + "$")])

    lists, error = convert("lists", "--no-verify")
    tolerance = error * factor
    reduced = [(n["function"], n["name"]) for n in lists["nodes"] if n["precision"] != "float32"]
    measured = {(n["node"]["function"], n["node"]["node"]): n for n in lists["profile"]["nodes"]}
    searched, searched_error = convert("searched", "--tolerance", f"max_abs={tolerance}")
    assert searched_error <= tolerance
    ours = float32_count(searched, reduced)

    autocast = None
    for threshold in (512, 128, 32, 8, 2, 0.5, 0.125, 0):
        kept = [name for key, name in reduced
                if max(float(measured[(key, name)]["inputMagnitude"]), float(measured[(key, name)]["magnitude"])) > threshold]
        report, reached = keeping(f"autocast-{threshold}", kept)
        if reached <= tolerance:
            autocast = float32_count(report, reduced)
            break
    layers, ranked = {}, []
    for key, name in reduced:
        layer = name.rsplit("/", 1)[0]
        if layer not in layers:
            ranked.append(layer)
        layers.setdefault(layer, []).append(name)
    ranked.sort(key=lambda l: -max(float(measured[next(k for k in reduced if k[1] == n)]["ownError"]) for n in layers[l]))
    whole = None
    for count in range(1, len(ranked) + 1):
        report, reached = keeping(f"layers-{count}", [n for layer in ranked[:count] for n in layers[layer]])
        if reached <= tolerance:
            whole = float32_count(report, reduced)
            break
    assert autocast is not None and whole is not None
    print(f"{build.__name__} {policy} tolerance {tolerance:.3g}: float32 search {ours}, "
          f"AutoCast-style {autocast}, whole layers {whole}")
    assert ours <= autocast and ours <= whole
    if build is large_activations:
        # Magnitudes above 512 that float16 holds well: AutoCast's rule keeps them all.
        assert ours < autocast and ours < whole
    if build is cancellation:
        # The sensitive products only, not the layers around them.
        assert ours < whole
