"""The trusted harness (autograder/harness.py) and the kernel agent (autograder/kernel_agent.py).

Units of the safe decoder first (no kernel), then one real kernel started with the agent as its
IPython startup file, as the grader starts it: calls, data and references crossing, RNG
sharing, exceptions, hostile values and kernels that stop answering.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autograder import harness
from autograder.harness import (
    Harness,
    KernelDied,
    KernelLink,
    KernelUnresponsive,
    LoadClock,
    Remote,
    RemoteDataError,
    RemoteRaised,
    decode,
    split_hidden,
)
from course_lib.testing import in_kernel, tiny_cnn

# --- decoding: only data, never code ---------------------------------------------------------


def test_decode_plain_values_and_containers():
    tree = {"$": "dict", "v": [["a", {"$": "tuple", "v": [1, 2.5, None, True]}],
                               [{"$": "int", "v": str(2**80)}, {"$": "float", "v": "nan"}]]}
    value = decode(tree, [], None)
    assert value["a"] == (1, 2.5, None, True)
    assert math.isnan(value[2**80])


def test_decode_tensor_and_array_from_raw_bytes():
    data = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    tree = {"$": "list", "v": [
        {"$": "tensor", "dtype": "float32", "shape": [2, 3], "b": 0, "rg": True},
        {"$": "ndarray", "dtype": "<i8", "shape": [3], "b": 1}]}
    tensor, array = decode(tree, [data.numpy().tobytes(), np.arange(3).tobytes()], None)
    assert torch.equal(tensor, data) and tensor.requires_grad
    assert array.tolist() == [0, 1, 2]


@pytest.mark.parametrize("tree, buffers, words", [
    ({"$": "tensor", "dtype": "float32", "shape": [4], "b": 0}, [b"\0" * 8], "size"),
    ({"$": "tensor", "dtype": "object", "shape": [1], "b": 0}, [b"\0"], "dtype"),
    ({"$": "ndarray", "dtype": "|O", "shape": [1], "b": 0}, [b"\0" * 8], "dtype"),
    ({"$": "ndarray", "dtype": "<f8", "shape": [1], "b": 3}, [], "buffer"),
    ({"$": "pickle", "v": "gASVAAAAAAAAAAB9lC4="}, [], "unknown kind"),
    ({"$": "ref", "h": "k1", "type": "x:y"}, [], "unknown kind"),  # no link: no references
    ({"$": "set", "v": [{"$": "list", "v": []}]}, [], "malformed"),
    ("not json we know" * 0 or {"$": 3}, [], "malformed"),
])
def test_decode_refuses_what_is_not_data(tree, buffers, words):
    with pytest.raises(RemoteDataError, match=words):
        decode(tree, buffers, None)


def test_decode_caps_nesting_and_size():
    deep: dict = {"$": "list", "v": []}
    node = deep
    for _ in range(200):
        child = {"$": "list", "v": []}
        node["v"].append(child)
        node = child
    with pytest.raises(RemoteDataError, match="nested too deep"):
        decode(deep, [], None)
    with pytest.raises(RemoteDataError, match="larger than"):
        decode({"$": "tensor", "dtype": "uint8", "shape": [10], "b": 0}, [b"\0" * 10], None,
               max_bytes=5)


def test_split_hidden_keeps_line_numbers():
    source = "a = 1\n### BEGIN HIDDEN TESTS\nassert a == 2\n### END HIDDEN TESTS\nb = 3"
    visible, hidden = split_hidden(source)
    assert visible.splitlines() == ["a = 1", "", "", "", "b = 3"]
    assert hidden.splitlines()[2] == "assert a == 2" and "a = 1" not in hidden


# --- a real kernel with the agent ------------------------------------------------------------

STUDENT = '''
import time
import torch
from torch import nn

def double(x):
    return 2 * x

def add_hook(model):
    model.register_forward_hook(lambda *a: None)
    return "ok"

def noisy(shape):
    return torch.randn(shape)

def fails():
    raise RuntimeError("boom")

def forever():
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        time.sleep(0.1)

def slow():
    time.sleep(60)

class Liar:
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True

class Figure:
    @property
    def drawn(self):  # a read that draws from the RNG, as a figure cell of the notebook would
        return float(torch.rand(1))

liar = Liar()
figure = Figure()
values = [1, "two", (3.0, None)]
model = nn.Linear(2, 2)
# rewire cell execution as an attacker would: every later cell becomes "pass"
get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])
'''


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    from jupyter_client import KernelManager

    from autograder.worker import seeded_ipython_dir

    folder = tmp_path_factory.mktemp("kernel")
    env = dict(os.environ, IPYTHONDIR=str(seeded_ipython_dir(folder, 0)), COURSE_SEED="0")
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(folder))
    kc = km.blocking_client()
    kc.start_channels()
    kc.wait_for_ready(timeout=120)
    reply = kc.execute_interactive(STUDENT, timeout=120)
    assert reply["content"]["status"] == "ok", reply["content"]
    yield km
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def link(kernel):
    link = KernelLink(kernel, timeout=20)
    yield link
    link.close()


def _remote(link: KernelLink, name: str):
    return link.request("get", Remote(link, {"g": name}))


def test_calls_cross_as_data_despite_input_transformers(link):
    double = _remote(link, "double")
    assert isinstance(double, Remote)
    result = double(torch.ones(2))
    assert type(result) is torch.Tensor and result.tolist() == [2.0, 2.0]
    assert _remote(link, "values") == [1, "two", (3.0, None)]


def test_objects_that_are_not_data_stay_remote_and_cannot_vouch_for_themselves(link):
    liar = _remote(link, "liar")
    assert isinstance(liar, Remote)
    assert liar != 1 and not (liar == "anything")
    with pytest.raises(TypeError, match="not data"):
        bool(liar)
    model = _remote(link, "model")
    assert isinstance(model, torch.nn.Linear)  # the kernel's class, as the grader knows it
    assert model.in_features == 2 and model.training is True


def test_student_exceptions_are_raised_as_their_builtin_type(link):
    with pytest.raises(RuntimeError, match="boom") as info:
        _remote(link, "fails")()
    assert isinstance(info.value, RemoteRaised)
    with pytest.raises(NameError):
        _remote(link, "no_such_name")


def test_in_kernel_sees_the_students_side_effects(link, kernel):
    h = Harness(0, lambda: link)
    h.link = link
    code = ("from course_lib.hooks import count_hooks\n"
            "from course_lib.testing import in_kernel, tiny_cnn\n"
            "_m = tiny_cnn()\n"
            "assert add_hook(_m) == 'ok'\n"
            "assert count_hooks(_m) == 0  # the grader's own copy is untouched\n"
            "assert count_hooks(in_kernel(_m)) == 1\n")
    outcome = h.run_test("test_side_effects", code)
    assert outcome.passed, outcome
    model = tiny_cnn()
    assert in_kernel(model) is model  # outside a test: the object itself


def test_global_rng_is_shared_with_the_kernel(link):
    h = Harness(0, lambda: link)
    h.link = link
    code = ("torch.manual_seed(5)\n_a = noisy(3)\n_b = noisy(3)\n"
            "torch.manual_seed(5)\n_c = noisy(3)\n"
            "assert torch.equal(_a, _c) and not torch.equal(_a, _b)\n")
    h.ns["torch"] = torch
    assert h.run_test("test_rng", code).passed


def test_a_test_cell_starts_from_the_rng_state_the_notebooks_cells_left(link):
    """The notebook's own cells draw from the kernel's RNG between two test cells: a test cell
    must start from that state, as it would in the notebook (a seed the test sets must then
    reach the kernel even when it equals the state the grader last saw)."""
    h = Harness(0, lambda: link)
    h.link = link
    h.ns["torch"] = torch
    assert h.run_test("test_sync", "_ = noisy(1)\n").passed  # grader and kernel in step
    # The kernel draws on its own (a read does not sync the RNGs), as the notebook's cells do.
    link.request("getattr", Remote(link, {"g": "figure"}), name="drawn")
    code = ("_state = torch.get_rng_state()\n_a = noisy(3)\ntorch.set_rng_state(_state)\n"
            "assert torch.equal(_a, torch.randn(3))\n")
    assert h.run_test("test_after_figure", code).passed


def test_failures_name_the_cause_without_test_code(link):
    h = Harness(0, lambda: link)
    h.link = link
    secret = "### BEGIN HIDDEN TESTS\nassert double(2) == 5\n### END HIDDEN TESTS"
    outcome = h.run_test("test_x", "assert double(1) == 2\n" + secret)
    assert not outcome.passed and "double(2)" not in outcome.message
    assert "line 3 of the hidden tests" in outcome.message
    outcome = h.run_test("test_y", "assert liar == 1, 'liar is not 1'")
    assert not outcome.passed and outcome.message == "liar is not 1"
    outcome = h.run_test("test_z", "### BEGIN HIDDEN TESTS\nfails()\n### END HIDDEN TESTS")
    assert outcome.message == "your code raised RuntimeError"  # no kernel text for hidden


def test_a_call_past_its_time_is_interrupted(kernel):
    link = KernelLink(kernel, timeout=2)
    try:
        with pytest.raises(KernelUnresponsive, match="interrupted"):
            _remote(link, "slow")()
        assert _remote(link, "double")(3) == 6  # the kernel is usable again
    finally:
        link.close()


def test_a_call_that_ignores_the_interrupt_breaks_the_link(tmp_path):
    from jupyter_client import KernelManager

    from autograder.worker import seeded_ipython_dir

    env = dict(os.environ, IPYTHONDIR=str(seeded_ipython_dir(Path(tmp_path), 0)))
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=env, cwd=str(tmp_path))
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        kc.execute_interactive(STUDENT, timeout=60)
        link = KernelLink(km, timeout=2)
        with pytest.raises(KernelUnresponsive, match="ignored the interrupt"):
            _remote(link, "forever")()
        assert link.broken
        link.close()
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_harness_module_is_what_in_kernel_consults():
    assert harness.KERNEL_COPY is None  # set only while a test cell runs


def test_an_async_kernel_manager_is_interrupted_and_its_death_noticed(tmp_path):
    """The grader's manager is nbclient's AsyncKernelManager: its methods must be awaited."""
    import time

    from jupyter_client import AsyncKernelManager
    from jupyter_core.utils import run_sync

    from autograder.worker import seeded_ipython_dir

    env = dict(os.environ, IPYTHONDIR=str(seeded_ipython_dir(Path(tmp_path), 0)))
    km = AsyncKernelManager(kernel_name="python3")
    run_sync(km.start_kernel)(env=env, cwd=str(tmp_path))
    kc = km.blocking_client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        kc.execute_interactive(STUDENT + "\ndef die():\n    import os\n    os._exit(1)\n",
                               timeout=60)
        link = KernelLink(km, timeout=2)
        with pytest.raises(KernelUnresponsive, match="interrupted"):
            _remote(link, "slow")()
        start = time.monotonic()
        with pytest.raises(KernelDied, match="died"):
            _remote(link, "die")()
        assert time.monotonic() - start < 10, "a dead kernel must be noticed in seconds"
        assert link.broken, "a kernel that died during a call must be restarted by the grader"
        link.close()
    finally:
        kc.stop_channels()
        run_sync(km.shutdown_kernel)(now=True)


# --- time limits that a loaded machine does not shorten ----------------------------------------


def _spinner(cpu: int) -> subprocess.Popen:
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nwhile True:\n    pass"
    return subprocess.Popen([sys.executable, "-S", "-c", code], start_new_session=True)


def test_load_clock_discounts_the_time_a_process_waits_for_a_cpu():
    """Four busy loops on one CPU: each runs a quarter of the time and waits the rest."""
    cpu = min(os.sched_getaffinity(0))
    loops = [_spinner(cpu) for _ in range(4)]
    try:
        time.sleep(0.5)  # all four started and pinned
        clock = LoadClock(loops[0].pid, stretch=4)
        capped = LoadClock(loops[0].pid, stretch=1.2)
        time.sleep(3)
        wall, waited = clock.wall(), clock.waited()
        assert 0.5 * wall < waited < wall, (wall, waited)
        assert clock.left(2) > 0, "3 s of wall-clock time, but well under 2 s of its own"
        assert capped.left(2) < 0, "the cap: 1.2 x 2 s of wall-clock time at most"
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def test_load_clock_is_the_wall_clock_on_an_idle_process_or_without_a_pid():
    idle = subprocess.Popen([sys.executable, "-S", "-c", "import time; time.sleep(30)"])
    try:
        clock = LoadClock(idle.pid, stretch=4)
        time.sleep(1)
        assert clock.waited() < 0.1 and clock.left(3) == pytest.approx(2, abs=0.2)
    finally:
        idle.kill()
        idle.wait()
    plain = LoadClock(None, stretch=4)
    time.sleep(0.2)
    assert plain.waited() == 0 and plain.left(1) == pytest.approx(0.8, abs=0.1)
    assert LoadClock(os.getpid(), stretch=1).waited() == 0  # stretch 1: a plain wall clock


def test_torch_threads_are_set_for_the_block_and_restored():
    """The harness runs a setup cell on one torch thread while the kernel runs it too."""
    from autograder.harness import torch_threads

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError), torch_threads(1):
            assert torch.get_num_threads() == 1
            raise RuntimeError("the setup cell failed")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
