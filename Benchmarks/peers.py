"""The peers' own virtual environment, bench-work/venv, shared by the benchmarks that run them."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_VENV = os.path.join(ROOT, "bench-work", "venv")
PEER_PACKAGES = ["tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "onnxconverter-common==1.16.0", "onnx",
                 "onnxruntime"]


def peer_python():
    """The peers' Python, made with PEER_PACKAGES on first use; installs what a venv made by an
    earlier version lacks."""
    python = os.path.join(PEER_VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", PEER_VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return python
