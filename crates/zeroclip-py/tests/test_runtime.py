"""Threads, the GIL and fork: work runs on the library's own threads with the GIL released, the
thread count can change, and a process forked after use does not hang."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time

import numpy as np
import pytest

import zeroclip
from conftest import MODELS, read_safetensors


@pytest.fixture(scope="module")
def model():
    m, _ = zeroclip.load(str(MODELS / "rn_jit.pt"))
    return m


def test_set_num_threads_changes_the_pool_and_not_the_numbers(model):
    exp = read_safetensors(MODELS / "rn_jit.expected.safetensors")
    zeroclip.set_num_threads(1)
    assert zeroclip.get_num_threads() == 1
    one = model.encode_image(exp["pixels"])
    zeroclip.set_num_threads(3)
    assert zeroclip.get_num_threads() == 3
    three = model.encode_image(exp["pixels"])
    np.testing.assert_array_equal(one, three)
    zeroclip.set_num_threads(2)


@pytest.mark.parametrize("bad", [0, -1, 10**6, 2.0, True])
def test_bad_thread_counts(bad):
    with pytest.raises(ValueError, match="threads"):
        zeroclip.set_num_threads(bad)


def test_the_gil_is_released_during_work(model):
    """Another Python thread runs while an encode is in native code.

    With a switch interval far longer than the test, a thread gives the GIL up only where it
    blocks or where native code releases it. Had the encode kept the GIL, this thread could run
    only before the worker set `inside` or after it set `done`, never in between.
    """
    pixels = np.repeat(read_safetensors(MODELS / "rn_jit.expected.safetensors")["pixels"], 16, 0)
    state = {"inside": False, "done": False, "seen_inside": False}

    def encode():
        state["inside"] = True
        model.encode_image(pixels)
        state["done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        worker = threading.Thread(target=encode)
        worker.start()
        while worker.is_alive():
            if state["inside"] and not state["done"]:
                state["seen_inside"] = True
            time.sleep(0.0001)  # blocks, so the worker gets the GIL
        worker.join()
    finally:
        sys.setswitchinterval(old)
    assert state["done"]
    assert state["seen_inside"], "the GIL was held for the whole encode"


def _child(conn, path):
    import zeroclip as zc

    m, pre = zc.load(path)
    exp_pixels = np.zeros((2, 3, m.visual.input_resolution, m.visual.input_resolution), np.float32)
    conn.send(m.encode_image(exp_pixels).shape)
    conn.close()


def test_a_forked_child_does_not_hang(model):
    exp = read_safetensors(MODELS / "rn_jit.expected.safetensors")
    model.encode_image(exp["pixels"])  # the parent's threads are running
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_child, args=(child, str(MODELS / "rn_jit.pt")))
    p.start()
    ok = parent.poll(120)
    p.join(5)
    if p.is_alive():
        p.kill()
    assert ok, "the forked child hung"
    assert parent.recv() == (2, model.embed_dim)
    assert p.exitcode == 0


_INHERITED = {}


def _encode_inherited(pixels):
    return _INHERITED["model"].encode_image(pixels)


def test_the_parents_model_used_in_a_forked_child(model):
    exp = read_safetensors(MODELS / "rn_jit.expected.safetensors")
    want = model.encode_image(exp["pixels"])
    _INHERITED["model"] = model
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_encode_inherited, (exp["pixels"],)).get(timeout=120)
    np.testing.assert_array_equal(got, want)


def test_models_and_preprocessing_pickle_by_reloading(model):
    import pickle

    m2 = pickle.loads(pickle.dumps(model))
    exp = read_safetensors(MODELS / "rn_jit.expected.safetensors")
    np.testing.assert_array_equal(m2.encode_image(exp["pixels"]), model.encode_image(exp["pixels"]))
    pre = zeroclip.Preprocess.openai(48)
    pre2 = pickle.loads(pickle.dumps(pre))
    assert (pre2.resolution, pre2.mean, pre2.std) == (pre.resolution, pre.mean, pre.std)


def test_a_batch_runs_on_one_thread(tmp_path):
    """Decoding one batch ahead of the model must not wait for the pool's only thread."""
    import subprocess
    import sys

    code = (
        "import zeroclip; zeroclip.set_num_threads(1)\n"
        f"m, _ = zeroclip.load({str(MODELS / 'hf_real_vocab')!r})\n"
        "c = zeroclip.Classifier(m, ['a dog', 'a cat'], cache=False, batch_size=2)\n"
        f"r = c.classify([{str(MODELS / 'tiny.png')!r}] * 5)\n"
        "assert all('predictions' in x for x in r), r\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
