"""No worker process is forked from a process where TensorFlow runs: a fork copies the locks its threads hold, and
the child can wait on one forever (seen: the suite hung when an export's images were decoded by a fork pool after a
training run in the same process). Decoding uses threads; a scan after training starts its workers from a fork
server. Each check runs in a fresh interpreter with a time limit, so a hang fails the test instead of the suite."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, write_tree

SCRIPT = r"""
import sys
import numpy as np
import psutil
import tensorflow as tf
from fer_core import datasets, store
from fer_core.train import data

x = tf.random.normal((64, 48, 48, 1))
model = tf.keras.Sequential([tf.keras.Input((48, 48, 1)), tf.keras.layers.Conv2D(8, 3), tf.keras.layers.Flatten(),
                             tf.keras.layers.Dense(7)])
model.predict(x, verbose=0)                               # TensorFlow's thread pools are running now
threads = psutil.Process().num_threads()
assert threads > 1, threads
assert store._pool_context() == "forkserver"
src, cache = sys.argv[1], sys.argv[2]
datasets.import_dataset(src, "s", cache=cache)
ds = datasets.load("s", cache=cache)
paths = [ds.image_path(p) for p in ds.catalog.sort_values("id")["path"]]
two = data.load_images(paths, 48, workers=2)
one = data.load_images(paths, 48, workers=1)
assert two.shape == (len(paths), 48, 48) and np.array_equal(one, two) and two.any()
res = store.scan("s", workers=2, cache=cache)
assert res.computed["quality"] == len(paths), res.summary()
print("ok", len(paths), threads)
"""


def test_decoding_and_scanning_after_tensorflow_ran_finish(tmp_path, fer_sample):
    src = write_tree(tmp_path / "src", dict(list(fer_sample.items())[:120]))
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(tmp_path / "cache")], capture_output=True,
                         text=True, timeout=300, cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[:2] == ["ok", "120"]


def test_a_process_without_tensorflow_forks_its_scan_workers():
    out = subprocess.run([sys.executable, "-c", "from fer_core import store; print(store._pool_context())"],
                         capture_output=True, text=True, timeout=120, cwd=str(ROOT),
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "fork"
