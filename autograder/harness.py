"""The trusted side of grading: test cells run here, student code stays in its kernel.

A test cell is written once (see docs/design.md, "Tests that run in both places"). In a student's
notebook it runs in the student's own kernel. When grading, :class:`Harness` runs the whole cell
in the grading process, in a namespace where:

- the names the notebook's *setup cells* define (imports, course models, the sample input) are
  the harness's own, made by running those cells' trusted source here too;
- the names the test cell assigns are ordinary local objects;
- every other name is a :class:`Remote` reference to the student's kernel: calling it, reading an
  attribute, indexing, ``len`` and iteration become requests over the ``course_agent`` comm of
  :mod:`autograder.kernel_agent`.

Arguments travel to the kernel as a pickle (the harness is trusted, the kernel may unpickle
it). Replies travel back as data only and are decoded by :func:`decode`, which builds tensors,
arrays, numbers, strings and containers from JSON and raw bytes and never runs kernel code;
whatever is not data stays in the kernel and comes back as another :class:`Remote`. A test passes
when its own assertions hold here: nothing the kernel does turns a failure into a pass.
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import io
import math
import os
import pickle
import queue
import random
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from nbformat import NotebookNode

from . import notebooks
from .config import (  # a ResNet-34 state dict is 87 MB
    DEFAULT_MAX_REPLY_BYTES,
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_TIMEOUT_STRETCH,
)

TARGET = "course_agent"
MAX_DEPTH = 64
MAX_ITEMS = 200_000
MAX_MESSAGE_CHARS = 1000  # a failure message shown in feedback
INTERRUPT_GRACE = 10  # seconds (of the kernel's own time) to answer once interrupted
# While a test cell runs: resolves course_lib.testing.in_kernel(obj) to the kernel's copy.
KERNEL_COPY: Callable[[Any], Any] | None = None
# Names a Remote never forwards (Python and libraries probe these; they are never data).
_LOCAL_DUNDERS = frozenset({"__name__", "__qualname__", "__doc__", "__module__"})
_TORCH_DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64", "complex64", "complex128",
                      "uint8", "int8", "int16", "int32", "int64", "bool")
_DATA_TYPES = (np.ndarray, np.generic, int, float, complex, str, bytes, list, tuple, dict, set,
               frozenset, type(None))


def _loaded_torch() -> Any:
    """torch if this process has imported it, else None (the harness imports it only if needed:
    a lab whose tests use no tensor grades without paying for the import)."""
    return sys.modules.get("torch")


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block with torch's intra-op threads of this process set to ``count``, when torch
    is loaded (an import of it in progress in another thread is waited for)."""
    if "torch" not in sys.modules:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class RemoteDataError(Exception):
    """The kernel's reply is not data the grader accepts (malformed, oversized, wrong type)."""


class KernelUnresponsive(Exception):
    """The kernel did not answer in time, or died; the tests that needed it fail."""


class CallTimedOut(KernelUnresponsive):
    """A call took longer than its time limit and was interrupted (the kernel still answers)."""


class KernelDied(KernelUnresponsive):
    """The kernel died while the grader waited for it (the grader restarts it)."""


class RemoteRaised(Exception):
    """Base of the exceptions re-raised here for an exception raised in the student's code."""


_RAISED: dict[str, type] = {}


def _raised_class(name: str) -> type:
    """A local exception class for a kernel-reported exception type name.

    Built-in exception types (``ValueError``, ``RuntimeError``...) are mirrored by a subclass,
    so a test may catch them as usual; anything else (and ``BaseException`` types such as
    ``KeyboardInterrupt``, which must never interrupt the grader) is a plain ``RemoteRaised``.
    """
    base = getattr(builtins, name, None) if name.isidentifier() else None
    if not (isinstance(base, type) and issubclass(base, Exception)):
        return RemoteRaised
    if name not in _RAISED:
        _RAISED[name] = type(name, (RemoteRaised, base), {"__module__": "student kernel"})
    return _RAISED[name]


def _resolve_class(path: str) -> type | None:
    """The class ``module:qualname`` if the grader has already imported it, else None.

    Nothing is imported on the kernel's word; data types are never claimed by a Remote.
    """
    module_name, _, qualname = path.partition(":")
    obj: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if obj is None or not part.isidentifier():
            return None
        obj = getattr(obj, part, None)
    torch = _loaded_torch()
    data_types = _DATA_TYPES + ((torch.Tensor,) if torch is not None else ())
    if not isinstance(obj, type) or issubclass(obj, data_types):
        return None
    return obj


class Remote:
    """An object that lives in the student's kernel, used through requests.

    Attribute reads, calls, indexing, ``len``, ``in`` and iteration go to the kernel; their
    results come back as data or as further Remotes. Equality is identity, the truth value and
    arithmetic are errors: a kernel object cannot vouch for itself. ``isinstance`` works for
    classes the grader has imported (the kernel reports its object's class).
    """

    __slots__ = ("_link", "_ref", "_type")

    def __init__(self, link: KernelLink, ref: dict, type_path: str = "") -> None:
        object.__setattr__(self, "_link", link)
        object.__setattr__(self, "_ref", ref)
        object.__setattr__(self, "_type", type_path)

    @property  # type: ignore[misc]
    def __class__(self):  # noqa: D105 - isinstance() consults it
        return _resolve_class(self._type) or Remote

    def _label(self) -> str:
        return self._ref.get("g") or self._type.rpartition(":")[2] or "object"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name not in _LOCAL_DUNDERS:
            raise AttributeError(name)
        return self._link.request("getattr", self, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"cannot set {name!r} on {self._label()} in the student's kernel")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.request("call", self, payload={"args": args, "kwargs": kwargs})

    def __getitem__(self, key: Any) -> Any:
        return self._link.request("getitem", self, payload={"key": key})

    def __len__(self) -> int:
        n = self._link.request("len", self)
        if type(n) is not int or n < 0:
            raise RemoteDataError(f"len() of {self._label()} is not a non-negative int")
        return n

    def __contains__(self, item: Any) -> bool:
        found = self._link.request("contains", self, payload={"item": item})
        if type(found) is not bool:
            raise RemoteDataError(f"'in' on {self._label()} did not give True or False")
        return found

    def __iter__(self) -> Iterator[Any]:
        items = self._link.request("list", self)
        if type(items) is not tuple:
            raise RemoteDataError(f"iterating {self._label()} did not give a sequence")
        return iter(items)

    def __bool__(self) -> bool:
        raise TypeError(f"{self._label()} is an object in the student's kernel, not data: test "
                        "one of its attributes or the result of a call instead")

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<{self._label()} in the student's kernel>"


def decode(tree: Any, buffers: list[bytes], link: KernelLink | None,
           max_bytes: int = DEFAULT_MAX_REPLY_BYTES) -> Any:
    """Build the value a kernel reply describes; raise :class:`RemoteDataError` if malformed.

    Args:
        tree: the reply's JSON value (as decoded by the Jupyter session).
        buffers: its raw byte buffers.
        link: where references (``{"$": "ref"}``) point; None refuses references.
        max_bytes: cap on the total size of the buffers.
    """
    if sum(len(b) for b in buffers) > max_bytes:
        raise RemoteDataError(f"the reply is larger than {max_bytes // 2**20} MB")
    count = [0]

    def buffer(node: dict) -> bytes:
        index = node.get("b")
        if type(index) is not int or not 0 <= index < len(buffers):
            raise RemoteDataError("a reply buffer is missing")
        return bytes(buffers[index])

    def shape_of(node: dict) -> tuple[int, ...]:
        shape = node.get("shape")
        if type(shape) is not list or len(shape) > 32 or not all(
                type(s) is int and 0 <= s < 2**40 for s in shape):
            raise RemoteDataError("a tensor's shape is malformed")
        return tuple(shape)

    def walk(node: Any, depth: int) -> Any:
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_ITEMS:
            raise RemoteDataError("the reply is nested too deep or has too many elements")
        if node is None or type(node) in (bool, str, float):
            return node
        if type(node) is int:
            return node
        if type(node) is not dict or type(node.get("$")) is not str:
            raise RemoteDataError("the reply is malformed")
        kind = node["$"]
        values = node.get("v")
        if kind in ("list", "tuple", "set", "frozenset"):
            if type(values) is not list:
                raise RemoteDataError("the reply is malformed")
            items = [walk(v, depth + 1) for v in values]
            try:
                return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](
                    items)
            except TypeError as exc:  # an unhashable set element
                raise RemoteDataError(f"the reply is malformed: {exc}") from None
        if kind == "dict":
            if type(values) is not list or not all(type(p) is list and len(p) == 2
                                                   for p in values):
                raise RemoteDataError("the reply is malformed")
            try:
                return {walk(k, depth + 1): walk(v, depth + 1) for k, v in values}
            except TypeError as exc:  # an unhashable key
                raise RemoteDataError(f"the reply is malformed: {exc}") from None
        if kind == "int" and type(values) is str and len(values) < 4000:
            try:
                return int(values)
            except ValueError:
                raise RemoteDataError("the reply is malformed") from None
        if kind == "float" and values in ("nan", "inf", "-inf"):
            return float(values)
        if kind == "size" and type(values) is list and all(type(v) is int for v in values):
            import torch

            return torch.Size(values)
        if kind == "tdtype" and values in _TORCH_DTYPE_NAMES:
            import torch

            return getattr(torch, values)
        if kind == "tensor":
            return tensor(node)
        if kind == "ndarray":
            dtype = numpy_dtype(node.get("dtype"))
            shape = shape_of(node)
            data = buffer(node)
            if math.prod(shape) * dtype.itemsize != len(data):
                raise RemoteDataError("an array's size does not match its shape")
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if kind == "npscalar":
            dtype = numpy_dtype(node.get("dtype"))
            data = buffer(node)
            if len(data) != dtype.itemsize:
                raise RemoteDataError("a NumPy scalar is malformed")
            return np.frombuffer(data, dtype=dtype)[0]
        if kind == "ref" and link is not None and type(node.get("h")) is str \
                and type(node.get("type", "")) is str:
            return Remote(link, {"h": node["h"][:40]}, node.get("type", "")[:300])
        raise RemoteDataError(f"the reply holds an unknown kind of value ({kind[:40]!r})")

    def numpy_dtype(name: Any) -> np.dtype:
        if type(name) is not str or len(name) > 8:
            raise RemoteDataError("an array's dtype is malformed")
        try:
            dtype = np.dtype(name)
        except TypeError:
            raise RemoteDataError("an array's dtype is malformed") from None
        if dtype.kind not in "biufc" or dtype.hasobject:
            raise RemoteDataError("an array's dtype is not numeric")
        return dtype

    def tensor(node: dict) -> Any:
        import torch

        if node.get("dtype") not in _TORCH_DTYPE_NAMES:
            raise RemoteDataError("a tensor's dtype is not supported")
        dtype = getattr(torch, node["dtype"])
        shape = shape_of(node)
        data = buffer(node)
        size = math.prod(shape)
        itemsize = 1 if dtype == torch.bool else torch.empty((), dtype=dtype).element_size()
        if size * itemsize != len(data):
            raise RemoteDataError("a tensor's size does not match its shape")
        if size == 0:
            out = torch.empty(shape, dtype=dtype)
        elif dtype == torch.bool:
            out = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.bool)
        else:
            out = torch.frombuffer(bytearray(data), dtype=dtype)
        out = out.reshape(shape)
        if node.get("param") is True:
            out = torch.nn.Parameter(out, requires_grad=node.get("rg") is True)
        elif node.get("rg") is True and (out.is_floating_point() or out.is_complex()):
            out.requires_grad_(True)
        if isinstance(node.get("grad"), dict) and node["grad"].get("$") == "tensor":
            grad = tensor({**node["grad"], "grad": None, "param": False, "rg": False})
            try:
                out.grad = grad
            except (RuntimeError, TypeError):
                raise RemoteDataError("a tensor's gradient does not match it") from None
        return out

    return walk(tree, 0)


@dataclass
class _Shipped:
    """Objects the kernel holds a copy of: ``id -> (object, reference)``."""

    refs: dict[int, tuple[Any, dict]] = field(default_factory=dict)
    counter: int = 0

    def find(self, obj: Any) -> dict | None:
        entry = self.refs.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else None

    def add(self, obj: Any, ref: dict) -> None:
        """Remember ``obj`` under ``ref``, and a module's submodules, parameters and buffers."""
        self.refs.setdefault(id(obj), (obj, ref))
        torch = _loaded_torch()
        if torch is not None and isinstance(obj, torch.nn.Module):
            for items in (obj.named_modules(), obj.named_parameters(), obj.named_buffers()):
                for path, sub in items:
                    if path:
                        self.refs.setdefault(id(sub), (sub, {**ref, "path": _join(
                            ref.get("path", ""), path)}))


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _trackable(obj: Any) -> bool:
    torch = _loaded_torch()
    kinds = (np.ndarray,) + ((torch.Tensor, torch.nn.Module) if torch is not None else ())
    return isinstance(obj, kinds)


class _Pickler(pickle.Pickler):
    """Pickles arguments; objects the kernel already holds travel as references."""

    def __init__(self, file: io.BytesIO, find: Callable[[Any], dict | None],
                 fresh: set[int]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.find, self.fresh = find, fresh

    def persistent_id(self, obj: Any) -> dict | None:
        if type(obj) is Remote:
            return obj._ref
        if id(obj) in self.fresh:
            return None
        return self.find(obj)


def kernel_pid(km: Any) -> int | None:
    """The kernel's process id on this machine, or None (not running, or not known)."""
    try:
        finder = getattr(km, "kernel_pid", None)
        if callable(finder):  # SandboxKernelManager: the kernel inside bubblewrap
            pid = finder()
        else:
            pid = getattr(getattr(getattr(km, "provisioner", None), "process", None), "pid",
                          None)
    except Exception:  # noqa: BLE001 - /proc raced with the kernel's exit: no pid
        return None
    return pid if isinstance(pid, int) and pid > 0 else None


def run_queue_waits(pid: int) -> dict[int, int]:
    """Nanoseconds each thread of process ``pid`` has spent runnable but waiting for a CPU.

    Linux's ``/proc/PID/task/TID/schedstat`` (second field); empty where it cannot be read.
    """
    waits = {}
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return waits
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                waits[int(tid)] = int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return waits


class LoadClock:
    """Time limits that a loaded machine does not shorten: the seconds a kernel could run.

    On an idle machine this clock is the wall clock. On a loaded one the kernel's threads wait
    for a CPU while other processes run; that wait is not the kernel's doing, and is not counted
    against its limit. The wait counted is the longest of any one of the kernel's threads
    (threads waiting for one another are not waiting for a CPU; a thread's wait is counted
    once). However much waiting there is, a limit expires at ``stretch`` times its value in
    wall-clock time, so that no load, including one the kernel makes itself with many threads,
    stretches it further.

    Args:
        pid: the kernel's process id (None: a plain wall clock).
        stretch: the cap, as a multiple of the limit (1: a plain wall clock).
    """

    def __init__(self, pid: int | None, stretch: float = DEFAULT_TIMEOUT_STRETCH) -> None:
        self.pid = pid
        self.stretch = max(1.0, float(stretch))
        self.start = time.monotonic()
        self._base = run_queue_waits(pid) if pid else {}

    def wall(self) -> float:
        return time.monotonic() - self.start

    def waited(self) -> float:
        """Seconds the kernel has waited for a CPU since this clock started."""
        if not self.pid or self.stretch == 1.0:
            return 0.0
        now = run_queue_waits(self.pid)
        return max((ns - self._base.get(tid, 0) for tid, ns in now.items()), default=0) / 1e9

    def left(self, limit: float) -> float:
        """Seconds until ``limit`` expires at the earliest (0 or less: it has)."""
        wall = self.wall()
        return min(limit - max(0.0, wall - self.waited()), limit * self.stretch - wall)


class KernelLink:
    """Requests to one kernel's agent over its own client connection.

    Args:
        km: the kernel's manager (``interrupt_kernel``, ``is_alive``, ``blocking_client``).
        timeout: seconds one request may take before the kernel is interrupted, counted on a
            :class:`LoadClock` (the student's code runs then: a limit that matters).
        max_bytes: cap on one reply's buffers.
        startup_timeout: seconds to connect to the kernel and its agent (the grader's own
            machinery: generous, as a loaded machine needs).
        stretch: see :class:`LoadClock`.
    """

    def __init__(self, km: Any, timeout: float, max_bytes: int = DEFAULT_MAX_REPLY_BYTES,
                 startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
                 stretch: float = DEFAULT_TIMEOUT_STRETCH) -> None:
        import zmq

        self.km, self.timeout, self.max_bytes = km, timeout, max_bytes
        self.stretch = stretch
        self.shipped = _Shipped()
        self.bound: dict[int, tuple[Any, dict]] = {}
        self.broken = ""
        self._context = zmq.Context()
        self._context.setsockopt(zmq.MAXMSGSIZE, max_bytes + 2**20)
        self.kc = km.blocking_client()
        self.kc.context = self._context
        try:
            self._connect(startup_timeout)
        except BaseException:
            self.close()
            raise
        self._pid = kernel_pid(km)  # a link lives no longer than its kernel: found once
        self._rng_synced = _rng_snapshot()

    def _connect(self, startup_timeout: float) -> None:
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=startup_timeout)
        except RuntimeError as exc:  # jupyter_client: died, or did not answer in time
            raise KernelUnresponsive(f"the grader could not connect to the kernel ({exc})") \
                from None
        self.comm_id = uuid.uuid4().hex
        msg = self.kc.session.msg("comm_open", {"comm_id": self.comm_id, "target_name": TARGET,
                                               "data": {}})
        self.kc.shell_channel.send(msg)
        # However loaded the machine, the agent answers before the kernel says it is idle
        # again: no answer by then means none will come (a submission took the agent's comm).
        hello = self._wait(msg["header"]["msg_id"], startup_timeout, until_idle=True)
        if not (isinstance(hello, tuple) and hello[0].get("ready") is True):
            raise KernelUnresponsive("the grading agent did not start in the kernel")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            self._context.destroy(linger=0)

    def _km(self, method: str) -> Any:
        """Call a kernel-manager method, awaiting it when the manager is asynchronous (the
        grader's is: nbclient's AsyncKernelManager)."""
        result = getattr(self.km, method)()
        if inspect.isawaitable(result):
            from jupyter_core.utils import run_sync

            async def wait() -> Any:
                return await result

            result = run_sync(wait)()
        return result

    def bind(self, name: str, obj: Any) -> None:
        """Tell the link that ``obj`` (a setup-cell module) is the kernel's global ``name``."""
        ref = {"g": name}
        holder = _Shipped()
        holder.add(obj, ref)
        self.bound.update(holder.refs)

    def _clock(self) -> LoadClock:
        return LoadClock(self._pid, self.stretch)

    def _wait(self, msg_id: str, timeout: float, clock: LoadClock | None = None,
              until_idle: bool = False) -> tuple[dict, list] | None:
        """The comm reply to ``msg_id``: (data, buffers), or None if none came in time.

        ``timeout`` is counted on ``clock`` (default: a plain wall clock). ``until_idle``: also
        None as soon as the kernel reports it is done with ``msg_id`` without a reply.
        """
        clock = clock or LoadClock(None)
        while True:
            left = clock.left(timeout)
            try:  # once time is up, what has arrived is still read (this process may lag)
                msg = self.kc.get_iopub_msg(timeout=min(max(left, 0.0), 1.0))
            except queue.Empty:
                if left <= 0:
                    return None
                if not self._km("is_alive"):
                    # Broken: the grader restarts the kernel before it runs anything else.
                    self.broken = ("the kernel died (crash, os._exit, memory or CPU-time cap) "
                                   "while the grader waited for it")
                    raise KernelDied(self.broken) from None
                continue
            except Exception as exc:  # noqa: BLE001 - a malformed message from the kernel
                raise RemoteDataError(f"unreadable message from the kernel ({exc!r:.100})") \
                    from None
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            content = msg.get("content", {})
            if until_idle and msg.get("msg_type") == "status" and \
                    content.get("execution_state") == "idle":
                return None
            if msg.get("msg_type") == "comm_close" and content.get("comm_id") == self.comm_id:
                raise KernelUnresponsive("the kernel closed the grader's connection")
            if msg.get("msg_type") == "comm_msg" and content.get("comm_id") == self.comm_id:
                data = content.get("data")
                if not isinstance(data, dict):
                    raise RemoteDataError("the kernel's reply is malformed")
                return data, list(msg.get("buffers") or [])

    def request(self, op: str, target: Remote | None = None, payload: dict | None = None,
                **fields: Any) -> Any:
        """Send one request; return the decoded value, or raise what the kernel raised."""
        if self.broken:
            raise KernelUnresponsive(self.broken)
        payload = dict(payload or {})
        data = {"op": op, **fields}
        if target is not None:
            data["target"] = target._ref
        if op == "call":
            current = _rng_snapshot()
            if not _rng_equal(current, self._rng_synced):
                payload["rng"] = current
        buffers = [self._pickle(payload)] if payload else []
        msg = self.kc.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        self.kc.session.send(self.kc.shell_channel.socket, msg, buffers=buffers)
        msg_id = msg["header"]["msg_id"]
        reply = self._wait(msg_id, self.timeout, self._clock())
        if reply is None:
            self._km("interrupt_kernel")
            reply = self._wait(msg_id, INTERRUPT_GRACE, self._clock())
            if reply is None:
                self.broken = (f"the kernel did not answer within {self.timeout:.0f} s and "
                               "ignored the interrupt")
                raise KernelUnresponsive(self.broken)
            if reply[0].get("ok") is False:
                raise CallTimedOut(f"the call took longer than {self.timeout:.0f} s and was "
                                   "interrupted")
        content, reply_buffers = reply
        if content.get("ok") is not True:
            name = content.get("type") if isinstance(content.get("type"), str) else "Exception"
            message = content.get("message") if isinstance(content.get("message"), str) else ""
            raise _raised_class(name)(message[:MAX_MESSAGE_CHARS])
        value = decode(content.get("value"), reply_buffers, self, self.max_bytes)
        if "rng" in content:
            with contextlib.suppress(Exception):
                _set_rng(decode(_without_unloaded_torch(content["rng"]), reply_buffers, None,
                                self.max_bytes))
            self._rng_synced = _rng_snapshot()
        return value

    def adopt_kernel_rng(self) -> None:
        """Take the kernel's global RNG states as this process's (and as the synced ones).

        The notebook's own cells draw from the kernel's generators between two test cells, so
        the kernel's state moves on without this process knowing; a test's
        ``torch.manual_seed(0)`` could then equal the last synced state and not be sent.
        """
        self.request("rng")

    def _pickle(self, payload: dict) -> bytes:
        fresh: dict[int, Any] = {}

        def collect(obj: Any, depth: int = 0) -> None:
            if depth > 20 or type(obj) is Remote:
                return
            if isinstance(obj, (list, tuple, set, frozenset)):
                for item in obj:
                    collect(item, depth + 1)
            elif isinstance(obj, dict):
                for item in obj.values():
                    collect(item, depth + 1)
            elif _trackable(obj) and self._find(obj) is None:
                fresh.setdefault(id(obj), obj)

        collect(payload)
        new = {}
        for obj in fresh.values():
            self.shipped.counter += 1
            new[f"h{self.shipped.counter}"] = obj
        if new:
            payload = {**payload, "new": new}
        holder = _Shipped()
        for key, obj in new.items():
            holder.add(obj, {"h": key})
        file = io.BytesIO()
        pickler = _Pickler(file, self._find, set(holder.refs))
        try:
            pickler.dump(payload)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise TypeError(f"cannot send this argument to the student's kernel: {exc}. Test "
                            "arguments must be data or objects of importable classes (torch, "
                            "torchvision, course_lib)") from None
        for ident, entry in holder.refs.items():
            self.shipped.refs.setdefault(ident, entry)
        return file.getvalue()

    def _find(self, obj: Any) -> dict | None:
        entry = self.bound.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        return self.shipped.find(obj)

    def kernel_copy(self, obj: Any) -> Any:
        """The student's kernel's copy of ``obj`` (an object passed to the student's code)."""
        if type(obj) is Remote:
            return obj
        ref = self._find(obj)
        if ref is None:
            raise ValueError("in_kernel(): this object was never passed to the student's code")
        return self.request("get", Remote(self, ref))


def _without_unloaded_torch(tree: Any) -> Any:
    """The kernel's RNG state without torch's when this process has not imported torch."""
    if _loaded_torch() is not None or not isinstance(tree, dict) or not isinstance(
            tree.get("v"), list):
        return tree
    return {**tree, "v": [p for p in tree["v"] if not (isinstance(p, list) and p[:1] == [
        "torch"])]}


def _rng_snapshot() -> dict:
    """The global RNG states of this process (torch's only once torch is imported)."""
    state = {"random": random.getstate(), "numpy": np.random.get_state()}
    torch = _loaded_torch()
    if torch is not None:
        state["torch"] = torch.get_rng_state()
    return state


def _rng_equal(a: dict, b: dict) -> bool:
    """Whether the states ``a`` and ``b`` share are equal (a state one lacks is not compared)."""
    na, nb = a["numpy"], b["numpy"]
    same = (a["random"] == b["random"] and na[0] == nb[0] and np.array_equal(na[1], nb[1])
            and tuple(na[2:]) == tuple(nb[2:]))
    if "torch" in a and "torch" in b:
        same = same and bool((a["torch"] == b["torch"]).all())
    return same


def _set_rng(state: Any) -> None:
    """Adopt the kernel's RNG states after a call (invalid states are ignored)."""
    if not isinstance(state, dict):
        return
    with contextlib.suppress(Exception):
        random.setstate(state["random"])
    with contextlib.suppress(Exception):
        np.random.set_state(state["numpy"])
    torch = _loaded_torch()
    if torch is not None:
        with contextlib.suppress(Exception):
            torch.set_rng_state(state["torch"])


# --- running cells in the harness -------------------------------------------------------------


class HarnessNamespace(dict):
    """Globals of the harness's cells: unknown names are the student's kernel's."""

    def __init__(self, link_getter: Callable[[], KernelLink | None]) -> None:
        super().__init__()
        self._link_getter = link_getter

    def __missing__(self, name: str) -> Any:
        if hasattr(builtins, name):
            return getattr(builtins, name)
        link = self._link_getter()
        if link is None or name.startswith("__"):
            raise KeyError(name)
        # Data comes back as a value (a list, a tensor), anything else as a Remote of its class.
        return link.request("get", Remote(link, {"g": name}))


def python_source(cell_source: str) -> str:
    """A notebook cell as plain Python: IPython magics and shell lines dropped."""
    return "\n".join(line for line in cell_source.splitlines()
                     if not line.startswith(("%", "!")))


@dataclass
class TestOutcome:
    """A test cell's verdict in the harness."""

    passed: bool
    ename: str = ""
    message: str = ""


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + " ..."


class Harness:
    """Runs one notebook's setup and test cells in this process against one kernel.

    Args:
        seed: the seed every kernel starts from (the harness's RNGs start from it too).
        link_factory: makes the :class:`KernelLink` to the current kernel (called lazily).
    """

    def __init__(self, seed: int, link_factory: Callable[[], KernelLink]) -> None:
        self.seed, self.link_factory = seed, link_factory
        self.link: KernelLink | None = None
        self.ns = HarnessNamespace(lambda: self.link)
        self.ns["__name__"] = "__course_harness__"
        self.setup_failures: list[str] = []
        self._seed_all()

    def _seed_all(self) -> None:
        random.seed(self.seed)
        np.random.seed(self.seed)
        torch = _loaded_torch()
        if torch is not None:
            torch.manual_seed(self.seed)

    def connect(self) -> KernelLink:
        if self.link is None:
            self.link = self.link_factory()
            self._bind_modules(self.ns)
        return self.link

    def reset_link(self) -> None:
        """Forget the kernel (it was restarted): objects are shipped again when needed."""
        if self.link is not None:
            self.link.close()
        self.link = None

    def close(self) -> None:
        self.reset_link()

    @contextlib.contextmanager
    def _quiet(self):
        global KERNEL_COPY
        out = io.StringIO()
        previous, KERNEL_COPY = KERNEL_COPY, lambda obj: self.connect().kernel_copy(obj)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            KERNEL_COPY = previous
            plt = sys.modules.get("matplotlib.pyplot")
            if plt is not None:
                plt.close("all")

    def run_setup(self, grade_id: str, source: str) -> None:
        """Run a setup cell's trusted source here; modules it defines are bound to the kernel's."""
        before = {k: id(v) for k, v in self.ns.items()}
        try:
            with self._quiet():
                exec(compile(python_source(source), f"<setup {grade_id}>", "exec"), self.ns)
        except Exception as exc:  # noqa: BLE001 - the instructor's cell failed: reported
            self.setup_failures.append(f"setup cell {grade_id} failed in the grader: "
                                       f"{type(exc).__name__}: {_short(str(exc))}")
            return
        if self.link is not None:
            self._bind_modules({k: v for k, v in self.ns.items() if before.get(k) != id(v)})

    def _bind_modules(self, names: dict) -> None:
        torch = _loaded_torch()
        if torch is None or self.link is None:
            return
        for name, value in list(names.items()):
            if isinstance(value, torch.nn.Module):
                self.link.bind(name, value)

    def run_test(self, grade_id: str, source: str) -> TestOutcome:
        """Run a test cell's trusted source here (visible part, then hidden part)."""
        visible, hidden = split_hidden(source)
        if self.setup_failures:
            return TestOutcome(False, "SetupError", self.setup_failures[0])
        try:
            link = self.connect()
        except Exception as exc:  # noqa: BLE001 - no kernel to test against
            return TestOutcome(False, "KernelUnresponsive", _short(str(exc)))
        synced = False
        for part, code in (("visible", visible), ("hidden", hidden)):
            if not code.strip():
                continue
            try:
                if not synced:  # a test cell starts from the RNG states the notebook left
                    link.adopt_kernel_rng()
                    synced = True
                compiled = compile(code, f"<{part} tests of {grade_id}>", "exec")
                with self._quiet():
                    exec(compiled, self.ns)
            except RemoteRaised as exc:
                name = type(exc).__name__
                detail = f": {_short(str(exc))}" if part == "visible" and str(exc) else ""
                return TestOutcome(False, name, f"your code raised {name}{detail}")
            except AssertionError as exc:
                text = _short(str(exc)) or _where(exc, part)
                return TestOutcome(False, "AssertionError", text)
            except KernelUnresponsive as exc:
                ename = "CellTimeoutError" if isinstance(exc, CallTimedOut) else \
                    "KernelDied" if isinstance(exc, KernelDied) else "KernelUnresponsive"
                return TestOutcome(False, ename, _short(str(exc)))
            except RemoteDataError as exc:
                return TestOutcome(False, "RemoteDataError", _short(str(exc)))
            except Exception as exc:  # noqa: BLE001 - any other failure of the test fails it
                return TestOutcome(False, type(exc).__name__, _short(str(exc)) or _where(
                    exc, part))
        return TestOutcome(True)


def _where(exc: BaseException, part: str) -> str:
    """"a check failed (line N of the hidden tests)" from the innermost harness frame."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(f"<{part} tests"):
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" (line {line} of the {part} tests)" if line else ""
    return f"a check failed{where}"


def split_hidden(source: str) -> tuple[str, str]:
    """(visible part, hidden part) of a test cell; hidden lines are blanked in the visible part.

    Line numbers are kept in both parts, so a failure message can name the line.
    """
    visible, hidden, inside = [], [], False
    for line in source.splitlines():
        if notebooks.BEGIN_HIDDEN in line:
            inside = True
            visible.append("")
            hidden.append("")
            continue
        if notebooks.END_HIDDEN in line:
            inside = False
            visible.append("")
            hidden.append("")
            continue
        (hidden if inside else visible).append(line)
        (visible if inside else hidden).append("")
    return "\n".join(visible), "\n".join(hidden)


def failure_output(outcome: TestOutcome) -> NotebookNode:
    """The error output a failed test cell gets (what SaveAutoGrades and feedback read)."""
    return NotebookNode(output_type="error", ename=outcome.ename, evalue=outcome.message,
                        traceback=[f"{outcome.ename}: {outcome.message}"])
