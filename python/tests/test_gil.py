"""Long calls release the GIL: a Python thread makes progress while adapt / meta_train_step run."""

import threading
import time

import metatape as mt
from conftest import w1_batch


def progress_during(call):
    """Runs `call` on another thread while this one loops in Python, and returns (the longest pause of
    this loop while the call ran, the call's duration). A call holding the GIL stalls the loop for
    its whole C++ part; one that releases it lets the loop run on (pauses of a switch interval at most)."""
    started, done = threading.Event(), threading.Event()
    window = []

    def worker():
        started.set()
        t0 = time.perf_counter()
        call()
        window.extend([t0, time.perf_counter()])
        done.set()

    thread = threading.Thread(target=worker)
    thread.start()
    started.wait()
    stamps = []
    while not done.is_set():
        stamps.append(time.perf_counter())
    thread.join()
    t0, t1 = window
    inside = [t0] + [s for s in stamps if t0 < s < t1] + [t1]
    return max(b - a for a, b in zip(inside, inside[1:])), t1 - t0


def test_meta_train_step_releases_the_gil():
    learner = mt.MAML(mt.nn.MLP([50, 128, 128, 3], seed=0), lr=0.1, steps=5, fused=False)
    batch = w1_batch(0, 128)
    pause, seconds = progress_during(lambda: learner.meta_train_step(batch))
    assert seconds > 0.05, "the call was too short to tell"
    assert pause < 0.4 * seconds, f"the Python thread stalled {pause:.3f} s of the {seconds:.3f} s call"


def test_meta_gradient_and_adapt_release_the_gil():
    learner = mt.MAML(mt.nn.MLP([50, 128, 128, 3], seed=0), lr=0.1, steps=1)
    t = w1_batch(1, 1)[0]
    pause, seconds = progress_during(lambda: learner.adapt(t.support_x, t.support_y, steps=2500))
    assert seconds > 0.05, "the call was too short to tell"
    assert pause < 0.4 * seconds, f"the Python thread stalled {pause:.3f} s of the {seconds:.3f} s adapt"
    batch = w1_batch(2, 400)
    pause, seconds = progress_during(lambda: learner.meta_gradient(batch))
    assert seconds > 0.05, "the call was too short to tell"
    assert pause < 0.4 * seconds, f"the Python thread stalled {pause:.3f} s of the {seconds:.3f} s meta_gradient"


def test_a_python_op_is_not_blocked_by_another_threads_learner():
    # two learners on two threads: both finish (each thread records on its own tape)
    results = []

    def train(seed):
        learner = mt.MAML(mt.nn.MLP([1, 16, 1], seed=seed), lr=0.01)
        tasks = mt.tasks.Sinusoid(seed=seed)
        for _ in range(20):
            m = learner.meta_train_step(tasks.sample_batch(4))
        results.append(m["step"])

    threads = [threading.Thread(target=train, args=(s,)) for s in (1, 2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == [20, 20]
