"""`tfmp finetune` against Keras 3 and TensorFlow: the same optimizer, loss and batches in Keras (a
GradientTape loop, as `fit` runs it) give the same weights; Keras's LossScaleOptimizer gives the
same loss scale step by step on a sequence with injected overflows; what tfmp writes loads in both of
TensorFlow's loaders and serves what tfmp's runtime computes; the float16 conversion of the digits
CNN, fine-tuned with float32 master weights and dynamic loss scaling, learns as the float32 model
does; gradients that underflow in float16 survive only with loss scaling."""
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pytest
import tensorflow as tf

from test_interop import ROOT, eigen_tensorflow, run_tf1, run_tf2, tfmp

DIGITS = os.path.join(ROOT, "Examples", "digits")


def check(result):
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def keras_model(head, seed=5):
    """A dense net with batch normalization (moving statistics set from data, as trained ones
    are), and a head: its last layer's units and activation."""
    import keras
    keras.utils.set_random_seed(seed)
    units, activation, *after = head
    x = keras.Input((6,), name="x")
    h = keras.layers.Dense(12, bias_initializer="random_normal", name="hidden")(x)
    h = keras.layers.BatchNormalization(name="norm")(h)
    h = keras.layers.Activation("relu")(h)
    out = keras.layers.Dense(units, activation=activation, bias_initializer="random_normal", name="head")(h)
    if after:  # an op after the activation: Keras then reads the output as probabilities
        out = out * after[0]
    model = keras.Model(x, out)
    norm = model.get_layer("norm")
    features = model.get_layer("hidden")(np.random.default_rng(0).standard_normal((256, 6)).astype("float32"))
    norm.moving_mean.assign(np.mean(features, 0))
    norm.moving_variance.assign(np.var(features, 0) + 0.5)
    return model


def data(loss, units, count=40, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((count, 6)).astype("float32")
    if loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, units, count).astype("int64")
    elif loss == "categorical_crossentropy":
        y = np.eye(units, dtype="float32")[rng.integers(0, units, count)]
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, (count, units)).astype("float32")
    else:
        y = rng.standard_normal((count, units)).astype("float32")
    return x, y


def keras_optimizer(name, learning_rate, momentum=0.0, nesterov=False):
    import keras
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=momentum, nesterov=nesterov)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    return keras.optimizers.AdamW(learning_rate)


def keras_loss(name, from_logits):
    """The Keras loss object (reduced over the batch, as `compile` makes it)."""
    import keras
    losses = keras.losses
    if name == "mse":
        return losses.MeanSquaredError()
    if name == "mae":
        return losses.MeanAbsoluteError()
    return {"sparse_categorical_crossentropy": losses.SparseCategoricalCrossentropy,
            "categorical_crossentropy": losses.CategoricalCrossentropy,
            "binary_crossentropy": losses.BinaryCrossentropy}[name](from_logits=from_logits)


def keras_fit(model, optimizer, loss_fn, x, y, batch_size, epochs):
    """Keras's training step (Trainer.train_step) in a loop over the batches in order:
    inference-mode forward, the loss scaled by a LossScaleOptimizer when it is one, its
    gradients applied. Returns the scale each step used and whether it was skipped."""
    import keras
    steps = []
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            scale = float(optimizer.dynamic_scale.numpy()) if scaled and optimizer.built else None
            before = optimizer.iterations.numpy()
            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=False))
                if scaled:
                    loss = optimizer.scale_loss(loss)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(gradients, model.trainable_variables)
            if scaled and scale is None:
                scale = optimizer.initial_scale
            steps.append((scale, bool(optimizer.iterations.numpy() == before)))
    return steps


def variables_of(path):
    """The variables of an exported Keras model as TensorFlow restores them, by path."""
    return {v.name.removesuffix(":0"): v.numpy() for v in tf.saved_model.load(path).variables}


CASES = [
    # (loss, head units and activation, optimizer, tfmp flags)
    ("sparse_categorical_crossentropy", (5, "softmax"), "adam", []),
    ("sparse_categorical_crossentropy", (5, "softmax", 1.0), "sgd", ["--from-probabilities"]),
    ("categorical_crossentropy", (4, "softmax", 0.5), "adam", ["--from-probabilities"]),
    ("categorical_crossentropy", (5, None), "sgd", ["--from-logits", "--momentum", "0.9", "--nesterov"]),
    ("binary_crossentropy", (3, "sigmoid"), "adamw", []),
    ("mse", (2, None), "sgd", ["--momentum", "0.5"]),
    ("mae", (2, None), "adam", []),
]


@pytest.mark.parametrize("loss,head,optimizer,flags", CASES,
                         ids=[c[0] + ("-probabilities" if len(c[1]) > 2 else "") for c in CASES])
def test_finetune_matches_keras(tmp_path, loss, head, optimizer, flags):
    import keras
    model = keras_model(head)
    source = str(tmp_path / "model")
    model.export(source, verbose=False)
    x, y = data(loss, head[0])
    np.savez(tmp_path / "data.npz", x=x, y=y)
    rate = 0.05
    momentum = float(flags[flags.index("--momentum") + 1]) if "--momentum" in flags else 0.0
    keras_fit(model, keras_optimizer(optimizer, rate, momentum, "--nesterov" in flags),
              keras_loss(loss, "--from-logits" in flags), x, y, batch_size=8, epochs=3)
    trained = str(tmp_path / "trained")
    out = check(tfmp("finetune", source, trained, "--data", str(tmp_path / "data.npz"), "--loss", loss,
                     "--optimizer", optimizer, "--learning-rate", str(rate), "--batch-size", "8",
                     "--epochs", "3", "--no-shuffle", *flags))
    assert "training 6 variables (2 frozen)" in out, out
    ours = variables_of(trained)
    before = variables_of(source)
    compared = 0
    for variable in model.variables:
        name = variable.path
        assert name in ours, (name, sorted(ours))
        expected = variable.numpy()
        if "moving" in name:
            np.testing.assert_array_equal(ours[name], before[name], err_msg=name)  # frozen
        else:
            assert not np.allclose(expected, before[name]), name  # it trained
            np.testing.assert_allclose(ours[name], expected, rtol=2e-4, atol=2e-5, err_msg=name)
        compared += 1
    assert compared == 8


def test_dynamic_loss_scale_matches_keras_loss_scale_optimizer(tmp_path):
    """Overflows injected at steps 2, 3 and 8 (an input of 1e30), growth after 3 finite steps: the
    scale each step used, the steps skipped and the final weights as Keras's LossScaleOptimizer has
    them; the log names the first variable whose gradient was not finite."""
    import keras
    model = keras_model((2, None), seed=8)
    source = str(tmp_path / "model")
    model.export(source, verbose=False)
    x, y = data("mse", 2, count=48, seed=3)
    for step in (2, 3, 8):
        x[(step - 1) * 4, 0] = 1e30
    np.savez(tmp_path / "data.npz", x=x, y=y)
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.02), initial_scale=2.0 ** 15, dynamic_growth_steps=3)
    expected = keras_fit(model, optimizer, keras.losses.MeanSquaredError(), x, y, batch_size=4, epochs=1)
    log = tmp_path / "log.jsonl"
    trained = str(tmp_path / "trained")
    check(tfmp("finetune", source, trained, "--data", str(tmp_path / "data.npz"), "--loss", "mse",
               "--optimizer", "sgd", "--learning-rate", "0.02", "--batch-size", "4", "--no-shuffle",
               "--loss-scale", "dynamic", "--initial-scale", "32768", "--growth-steps", "3",
               "--log", str(log)))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in records if "step" in r]
    assert [(r["lossScale"], r["skipped"]) for r in steps] == expected
    assert [r["step"] for r in steps if r["skipped"]] == [2, 3, 8]
    # Halved on each overflow, doubled after 3 finite steps in a row.
    assert [r["lossScale"] for r in steps] == [32768, 32768, 16384] + [8192] * 3 + [16384] * 2 + [8192] * 3 + [16384]
    assert all(r.get("nonFiniteVariable") == "hidden/kernel" for r in steps if r["skipped"])
    assert not any("nonFiniteVariable" in r for r in steps if not r["skipped"])
    ours = variables_of(trained)
    for variable in model.trainable_variables:
        np.testing.assert_allclose(ours[variable.path], variable.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=variable.path)


def test_finetuned_model_loads_in_both_loaders_and_serves_what_tfmp_runs(tmp_path):
    """Fine-tuned from float32 master weights, the trained weights are written as float32 (the
    default, `--weights kept`) or, with `--weights auto`, stored in float16 where `tfmp convert
    --weights auto` stores the original's: either model loads in both loaders and serves what
    `tfmp run` computes."""
    converted = str(tmp_path / "digits16")
    check(tfmp("convert", DIGITS, converted, "--weights", "float32"))
    images = np.load(os.path.join(ROOT, "Examples", "digits-sample.npy"))
    labels = np.load(os.path.join(ROOT, "Examples", "digits-sample-labels.npy"))
    np.savez(tmp_path / "data.npz", image=images[::-1].copy(), y=labels[::-1].copy())
    stored = {}
    for weights in ("kept", "auto"):
        trained = str(tmp_path / weights)
        out = check(tfmp("finetune", converted, trained, "--data", str(tmp_path / "data.npz"),
                         "--loss", "sparse_categorical_crossentropy", "--learning-rate", "0.01",
                         "--epochs", "2", "--batch-size", "4", "--weights", weights))
        ours_path = str(tmp_path / (weights + ".npz"))
        check(tfmp("run", trained, "--input", "image=" + os.path.join(ROOT, "Examples", "digits-sample.npy"),
                   "--output", ours_path))
        ours = np.load(ours_path)["output_0"]
        for run in (run_tf2, run_tf1):
            theirs = run(trained, {"image": images})["output_0"]
            assert theirs.dtype == np.float32
            np.testing.assert_allclose(ours, theirs, atol=2e-3)
        before = run_tf2(converted, {"image": images})["output_0"]
        assert np.abs(before - ours).max() > 1e-3  # the weights changed
        reader = tf.train.load_checkpoint(os.path.join(trained, "variables", "variables"))
        stored[weights] = {k: reader.get_tensor(k) for k in reader.get_variable_to_dtype_map()
                           if k.endswith("VARIABLE_VALUE")}
    # Kept: master weights stay float32, as the conversion stored them.
    assert all(v.dtype == np.float32 for v in stored["kept"].values())
    # Auto: float16 where the conversion with --weights auto stores float16, the same trained
    # values rounded (the two runs train alike: same seed, same batches).
    check(tfmp("convert", DIGITS, str(tmp_path / "auto16")))
    reader = tf.train.load_checkpoint(os.path.join(str(tmp_path / "auto16"), "variables", "variables"))
    expected = {k for k, dtype in reader.get_variable_to_dtype_map().items()
                if k.endswith("VARIABLE_VALUE") and dtype == tf.float16}
    assert expected and len(expected) < len(stored["auto"])
    assert {k for k, v in stored["auto"].items() if v.dtype == np.float16} == expected
    for key, value in stored["auto"].items():
        np.testing.assert_array_equal(value, stored["kept"][key].astype(value.dtype), err_msg=key)
    assert "variables stored in float16" in out


def rotated_digits():
    from sklearn.datasets import load_digits
    digits = load_digits()
    images = np.rot90((digits.images / 16.0).astype("float32")[..., None], 1, axes=(1, 2)).copy()
    return images, digits.target.astype("int64")


def test_digits_float16_finetune_reaches_float32_accuracy(tmp_path):
    """The shipped digits CNN, on digits turned a quarter (where it scores about 11%), fine-tuned for
    4 epochs: its float16 conversion with float32 master weights and dynamic loss scaling ends within
    1 point of the float32 model's test accuracy, TensorFlow scoring both."""
    images, labels = rotated_digits()
    np.savez(tmp_path / "train.npz", image=images[:1500], y=labels[:1500])
    test_images, test_labels = images[1500:], labels[1500:]
    converted = str(tmp_path / "digits16")
    check(tfmp("convert", DIGITS, converted, "--weights", "float32"))
    accuracy = {}
    for name, source in (("float32", DIGITS), ("float16", converted)):
        trained = str(tmp_path / f"trained-{name}")
        out = check(tfmp("finetune", source, trained, "--data", str(tmp_path / "train.npz"),
                         "--loss", "sparse_categorical_crossentropy", "--epochs", "4", "--batch-size", "32"))
        assert ("loss scale dynamic" in out) == (name == "float16"), out
        predicted = run_tf2(trained, {"image": test_images})["output_0"].argmax(-1)
        accuracy[name] = float((predicted == test_labels).mean())
    before = run_tf2(DIGITS, {"image": test_images})["output_0"].argmax(-1)
    assert (before == test_labels).mean() < 0.2
    assert accuracy["float32"] > 0.75, accuracy
    assert abs(accuracy["float16"] - accuracy["float32"]) <= 0.01, accuracy


def test_float16_gradients_underflow_without_loss_scaling_and_survive_with_it(tmp_path):
    """A regression net whose errors are small (1e-4) and whose head weights are small (1e-3): the
    gradient reaching the hidden layer is about 1e-9, below float16's smallest subnormal. Adam moves
    a weight whenever its gradient is not zero (one step: after it, the
    errors are no longer small). In the float16 conversion
    without loss scaling the hidden kernel does not move at all; with dynamic scaling it moves, as it
    does in float32."""
    import keras
    keras.utils.set_random_seed(4)
    x_in = keras.Input((8,), name="x")
    h = keras.layers.Dense(16, activation="tanh", name="hidden")(x_in)
    out = keras.layers.Dense(1, kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3), name="head")(h)
    model = keras.Model(x_in, out)
    source = str(tmp_path / "model")
    model.export(source, verbose=False)
    x = np.random.default_rng(2).standard_normal((32, 8)).astype("float32")  # one step
    y = model.predict(x, verbose=0) + 1e-4
    np.savez(tmp_path / "data.npz", x=x, y=y)
    converted = str(tmp_path / "model16")
    check(tfmp("convert", source, converted, "--weights", "float32"))
    moved = {}
    for name, model_path, scale in (("float16 none", converted, "none"), ("float16 dynamic", converted, "dynamic"),
                                    ("float32 none", source, "none")):
        trained = str(tmp_path / name.replace(" ", "-"))
        check(tfmp("finetune", model_path, trained, "--data", str(tmp_path / "data.npz"), "--loss", "mse",
                   "--loss-scale", scale, "--batch-size", "32", "--learning-rate", "1e-3"))
        after, before = variables_of(trained), variables_of(model_path)
        moved[name] = float(np.abs(after["hidden/kernel"] - before["hidden/kernel"]).max())
    assert moved["float16 none"] == 0.0, moved
    # Adam's first step is lr * g / (|g| + 1e-7): for g of about 3e-9, about 3e-5.
    assert moved["float32 none"] > 1e-5, moved
    assert moved["float16 dynamic"] == pytest.approx(moved["float32 none"], rel=0.05), moved


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_exported_train_step_in_tensorflow_trains_as_tfmp_finetune(tmp_path, precision):
    """tfmp fine-tunes for one epoch and exports its step; TensorFlow runs that train_step over the
    second epoch's batches (a plain loop, as Examples/train_step.py does), going on from tfmp's
    optimizer state and loss scale; tfmp fine-tuning for two epochs gives the same weights. In
    float16 the scale starts at 2^15, so the first steps overflow and are skipped, in both."""
    model = keras_model((5, "softmax"), seed=11)
    source = str(tmp_path / "model")
    model.export(source, verbose=False)
    if precision == "float16":
        converted = str(tmp_path / "model16")
        check(tfmp("convert", source, converted, "--weights", "float32"))
        source = converted
    x, y = data("sparse_categorical_crossentropy", 5, count=40, seed=6)
    x *= 40  # large gradients: the float16 step overflows at the start
    np.savez(tmp_path / "data.npz", x=x, y=y)
    common = ["--data", str(tmp_path / "data.npz"), "--loss", "sparse_categorical_crossentropy",
              "--batch-size", "8", "--no-shuffle", "--learning-rate", "0.01"]
    exported = str(tmp_path / "exported")
    check(tfmp("finetune", source, exported, "--epochs", "1", "--export-train-step", *common))
    reference = str(tmp_path / "reference")
    log = tmp_path / "log.jsonl"
    check(tfmp("finetune", source, reference, "--epochs", "2", "--log", str(log), *common))
    second = [json.loads(line) for line in log.read_text().splitlines()]
    second = [r for r in second if "step" in r and r["epoch"] == 2]

    # TensorFlow's loop, in its Eigen kernels (see eigen_tensorflow): the step's outputs and the
    # variables after it.
    stepped = str(tmp_path / "stepped.npz")
    eigen_tensorflow(
        "import sys, numpy as np, tensorflow as tf\n"
        "data = np.load(sys.argv[2]); x, y = data['x'], data['y']\n"
        "loaded = tf.saved_model.load(sys.argv[1]); step = loaded.signatures['train_step']\n"
        "rows = [step(x=tf.constant(x[s:s + 8]), y=tf.constant(y[s:s + 8])) for s in range(0, 40, 8)]\n"
        "np.savez(sys.argv[3], **{f'{k}/{i}': r[k].numpy() for i, r in enumerate(rows) for k in r},\n"
        "         **{'variable:' + v.name.removesuffix(':0'): v.numpy() for v in loaded.variables})\n",
        exported, str(tmp_path / "data.npz"), stepped)
    with np.load(stepped) as found:
        results = [{k: found[f"{k}/{i}"] for k in ("loss", "loss_scale", "skipped")} for i in range(5)]
        theirs = {k.removeprefix("variable:"): found[k] for k in found.files if k.startswith("variable:")}
    assert [float(r["loss_scale"]) for r in results] == [r["lossScale"] for r in second]
    assert [bool(r["skipped"]) for r in results] == [r["skipped"] for r in second]
    # Measured: weights within 6e-8 in float32 and 5.3e-6 in float16 (TensorFlow's float16
    # kernels round differently from tfmp's); losses within 1e-7 relative in both.
    tolerance = 1e-6 if precision == "float32" else 5e-5
    np.testing.assert_allclose([float(r["loss"]) for r in results], [r["loss"] for r in second],
                               rtol=1e-5)
    if precision == "float16":
        first = [json.loads(line) for line in log.read_text().splitlines()]
        assert any(r.get("skipped") for r in first if r.get("epoch") == 1)
    ours = variables_of(reference)
    for name in ("hidden/kernel", "hidden/bias", "norm/gamma", "norm/beta", "head/kernel", "head/bias"):
        np.testing.assert_allclose(theirs[name], ours[name], rtol=tolerance, atol=tolerance, err_msg=name)
    for name in ("norm/moving_mean", "norm/moving_variance"):
        np.testing.assert_array_equal(theirs[name], ours[name])
    # Its other signatures still load and serve in both loaders.
    for run in (run_tf2, run_tf1):
        assert run(exported, {"x": x[:4]})["output_0"].shape == (4, 5)
