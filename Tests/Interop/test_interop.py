"""Interop tests: what tfmp writes must load in real TensorFlow (the oracle), not just in tfmp.

Run by Scripts/test inside the virtual environment it creates (tensorflow-cpu==2.21.0). TFMP_BINARY
and TFMP_INTEROP_HELPER name the built executables.
"""
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "_TestSupport", "Fixtures")
TFMP = os.environ.get("TFMP_BINARY", os.path.join(ROOT, ".build", "debug", "tfmp"))
HELPER = os.environ.get("TFMP_INTEROP_HELPER", os.path.join(ROOT, ".build", "debug", "tfmp-interop-helper"))
MANIFEST = json.load(open(os.path.join(FIXTURES, "MANIFEST.json")))
NAMES = sorted(MANIFEST["fixtures"])


def eigen_tensorflow(script, *args):
    """Runs the Python `script` (its arguments in sys.argv[1:], Tests/Interop and Scripts on its
    path) in a TensorFlow started without oneDNN: its Eigen kernels accumulate float16 products in
    float32, as tfmp and Tensor Cores do, the same on every CPU. oneDNN's float16 kernels differ by
    CPU: on an AVX512-FP16 Xeon without AMX they were 5x further from tfmp's than Eigen's."""
    path = os.pathsep.join([os.path.join(ROOT, "Tests", "Interop"), os.path.join(ROOT, "Scripts")])
    environment = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", PYTHONPATH=path)
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                            env=environment)
    assert result.returncode == 0, result.stderr[-2000:]


def tfmp(*args):
    return subprocess.run([TFMP, *args], capture_output=True, text=True)


def sample(name, kind):
    with np.load(os.path.join(FIXTURES, f"{name}.{kind}.npz")) as data:
        return {k: data[k] for k in data.files}


def run_tf2(path, inputs):
    """tf.saved_model.load, the TF2 loader."""
    fn = tf.saved_model.load(path).signatures["serving_default"]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def run_tf1(path, inputs):
    """The TF1 loader in a Session: graph import, __traced_restore, signature tensor names (as TF Serving)."""
    graph = tf.Graph()
    with tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
        signature = meta.signature_def["serving_default"]
        feeds = {signature.inputs[k].name: v for k, v in inputs.items()}
        keys = sorted(signature.outputs)
        values = session.run([signature.outputs[k].name for k in keys], feed_dict=feeds)
        return dict(zip(keys, values))


@pytest.fixture(scope="module")
def resaved(tmp_path_factory):
    """Every fixture read and written back by `tfmp resave`."""
    folder = tmp_path_factory.mktemp("resaved")
    paths = {}
    for name in NAMES:
        out = str(folder / name)
        result = tfmp("resave", os.path.join(FIXTURES, name), out)
        assert result.returncode == 0, result.stderr
        paths[name] = out
    return paths


@pytest.mark.parametrize("name", NAMES)
def test_resaved_checkpoint_is_byte_identical(resaved, name):
    original = os.path.join(FIXTURES, name, "variables")
    for file in sorted(os.listdir(original)):
        with open(os.path.join(original, file), "rb") as a, open(os.path.join(resaved[name], "variables", file), "rb") as b:
            assert a.read() == b.read(), f"{name}: variables/{file} differs"


@pytest.mark.parametrize("name", NAMES)
def test_resaved_model_gives_identical_outputs_in_both_loaders(resaved, name):
    inputs, recorded = sample(name, "inputs"), sample(name, "outputs")
    for loader in (run_tf2, run_tf1):
        before = loader(os.path.join(FIXTURES, name), inputs)
        after = loader(resaved[name], inputs)
        assert sorted(after) == sorted(recorded), loader.__name__
        for key in recorded:
            np.testing.assert_array_equal(after[key], before[key], err_msg=f"{loader.__name__} {key}")
            # The recording may come from another CPU, whose kernels sum in another order:
            # float32 roundoff is relative to the output's scale, not to each element.
            scale = max(1.0, float(np.abs(recorded[key]).max()))
            np.testing.assert_allclose(after[key], recorded[key], rtol=1e-5, atol=1e-6 * scale,
                                       err_msg=f"{loader.__name__} {key} vs recorded")


def test_checkpoint_written_from_scratch_reads_back_in_tensorflow(tmp_path):
    prefix, expected_path = str(tmp_path / "scratch"), str(tmp_path / "expected.json")
    result = subprocess.run([HELPER, prefix, expected_path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    expected = json.load(open(expected_path))
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    assert sorted(dtypes) == sorted(expected)
    for key, spec in expected.items():
        value = reader.get_tensor(key)
        assert dtypes[key].name == spec["dtype"], key
        assert list(np.shape(value)) == spec["shape"], key
        if spec["dtype"] == "string":
            assert [s.hex() for s in value.tolist()] == spec["strings"], key
        else:
            assert np.ascontiguousarray(value).tobytes().hex() == spec["hex"], key
    assert reader.get_tensor("half/values")[0] == np.float16(65504)
    assert float(reader.get_tensor("brain/values")[6]) == float("inf")  # float32 max rounds past bfloat16 max


@pytest.mark.parametrize("name", NAMES)
def test_inspect_matches_tensorflows_view(name):
    path = os.path.join(FIXTURES, name)
    result = tfmp("inspect", "--json", path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    from tensorflow.python.saved_model import loader_impl
    meta = loader_impl.parse_saved_model(path).meta_graphs[0]
    ours = {s["key"]: s for s in summary["signatures"]}
    assert sorted(ours) == sorted(meta.signature_def)
    for key, signature in meta.signature_def.items():
        for kind in ("inputs", "outputs"):
            theirs = getattr(signature, kind)
            mine = {spec["name"]: spec for spec in ours[key][kind]}
            assert sorted(mine) == sorted(theirs), (key, kind)
            for tensor_name, info in theirs.items():
                spec = mine[tensor_name]
                assert spec["tensor"] == info.name
                if info.dtype:
                    assert spec["dtype"] == tf.as_dtype(info.dtype).name
                shape = tf.TensorShape(info.tensor_shape)
                if shape.rank is None:
                    assert spec.get("shape") is None
                else:
                    assert spec["shape"] == [-1 if d is None else d for d in shape.as_list()]
    # Variables: every checkpoint key TF lists (object graph aside) belongs to one reported
    # variable with TF's shape, and the logical count matches the Keras model's weights.
    listed = dict(tf.train.list_variables(os.path.join(path, "variables", "variables")))
    listed.pop("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert summary["variables"]["checkpointEntryCount"] == len(listed)
    # A Keras export lists its weights once in `variables`; a tf.Module stores each variable once.
    loaded = tf.saved_model.load(path)
    weights = loaded.variables if hasattr(loaded, "variables") else list(listed)
    assert summary["variables"]["count"] == len(weights)
    for variable in summary["variables"]["largest"]:
        for key in variable["checkpointKeys"]:
            assert listed[key] == variable["shape"], key
