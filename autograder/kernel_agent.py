"""Runs in every kernel the grader starts, before any notebook cell (an IPython startup file).

The kernel is untrusted: everything here can be undone by the submission's own code, and the
grader never takes a verdict from it. It does two things:

1. seeds ``random``, NumPy and torch with ``$COURSE_SEED``, so stochastic cells (SmoothGrad noise,
   gradient ascent from noise) run the same on every grading;
2. answers the grader's requests on the Jupyter comm ``course_agent``: call a notebook name, read
   an attribute, index, take a length, list an iterable, fetch an object the grader sent earlier.
   A result that is plain data (tensors, arrays, numbers, strings, None, and lists, tuples,
   dicts and sets of them) goes back as JSON plus raw byte buffers, never as a pickle, so the
   grader can decode it without running code. Anything else stays here under a handle that the
   grader can use in later requests. Arguments come from the grader (trusted) as a pickle.

Comm messages bypass the cell-execution machinery (input and AST transformers, pre/post-run
events, custom exception handlers, ``run_cell``), so a submission that rewires those does not
stop its own functions from being called. This file must stay self-contained: the sandbox mounts
the Python environment and ``course_lib``, not the ``autograder`` package.
"""

import io as _io
import os as _os
import pickle as _pickle
import random as _random

_SEED = int(_os.environ.get("COURSE_SEED", "0"))
_random.seed(_SEED)
try:
    import numpy as _np

    _np.random.seed(_SEED)
except ImportError:  # pragma: no cover - numpy is a course dependency
    _np = None
try:
    import torch as _torch

    _torch.manual_seed(_SEED)
except ImportError:  # pragma: no cover - torch is a course dependency
    _torch = None

TARGET = "course_agent"
PROTOCOL = 1
MAX_DEPTH = 64  # nesting of lists/dicts in one reply
MAX_ITEMS = 200_000  # list, tuple, dict or set elements in one reply
MAX_LIST = 10_000  # elements taken from an iterable by the "list" request


def _install(shell):
    handles = {}
    counter = [0]

    def keep(obj):
        counter[0] += 1
        key = f"k{counter[0]}"
        handles[key] = obj
        return key

    def type_path(obj):
        cls = type(obj)
        return f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', '?')}"

    class _Encoder:
        def __init__(self):
            self.buffers = []
            self.items = 0

        def buffer(self, data):
            self.buffers.append(data)
            return len(self.buffers) - 1

        def __call__(self, value, depth=0):
            self.items += 1
            if depth > MAX_DEPTH or self.items > MAX_ITEMS:
                raise ValueError("the value is nested too deep or has too many elements")
            if value is None or type(value) in (bool, str):
                return value
            if type(value) is int:
                return value if abs(value) < 2**53 else {"$": "int", "v": str(value)}
            if type(value) is float:
                return value if value == value and abs(value) != float("inf") else {
                    "$": "float", "v": repr(value)}
            if type(value) in (list, tuple, set, frozenset):
                kind = type(value).__name__
                return {"$": kind, "v": [self(v, depth + 1) for v in value]}
            if isinstance(value, dict) and type(value).__module__ in ("builtins", "collections"):
                return {"$": "dict", "v": [[self(k, depth + 1), self(v, depth + 1)]
                                           for k, v in value.items()]}
            if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
                return {"$": "tuple", "v": [self(v, depth + 1) for v in value]}
            if _torch is not None:
                if isinstance(value, _torch.Size):
                    return {"$": "size", "v": [int(v) for v in value]}
                if isinstance(value, _torch.dtype):
                    return {"$": "tdtype", "v": str(value).replace("torch.", "")}
                if type(value) in (_torch.Tensor, _torch.nn.Parameter) and value.layout == \
                        _torch.strided and not value.is_quantized:
                    return self.tensor(value)
            if _np is not None:
                if type(value) is _np.ndarray and value.dtype.kind in "biufc":
                    data = _np.ascontiguousarray(value)
                    return {"$": "ndarray", "dtype": data.dtype.str, "shape": list(data.shape),
                            "b": self.buffer(data.tobytes())}
                if isinstance(value, _np.generic) and value.dtype.kind in "biufc":
                    return {"$": "npscalar", "dtype": value.dtype.str,
                            "b": self.buffer(value.tobytes())}
            return {"$": "ref", "h": keep(value), "type": type_path(value)}

        def tensor(self, value):
            t = value.detach().cpu().contiguous()
            dtype = str(t.dtype).replace("torch.", "")
            raw = t.reshape(-1).view(_torch.uint8) if t.numel() and t.dtype != _torch.bool \
                else t.reshape(-1).to(_torch.uint8)
            param = isinstance(value, _torch.nn.Parameter)
            node = {"$": "tensor", "dtype": dtype, "shape": list(t.shape), "param": param,
                    "rg": bool(value.requires_grad), "b": self.buffer(raw.numpy().tobytes())}
            grad = value.grad if value.is_leaf else None
            if type(grad) is _torch.Tensor and grad.layout == _torch.strided:
                node["grad"] = self.tensor(grad)
            return node

    user_ns = shell.user_ns

    def resolve(ref):
        if "g" in ref:
            if ref["g"] not in user_ns:
                raise NameError(f"name {ref['g']!r} is not defined")
            obj = user_ns[ref["g"]]
        else:
            obj = handles[ref["h"]]
        for part in filter(None, ref.get("path", "").split(".")):
            obj = getattr(obj, part)
        return obj

    class _Unpickler(_pickle.Unpickler):
        def persistent_load(self, pid):
            return resolve(pid)

    def rng_state():
        state = {"random": _random.getstate()}
        if _np is not None:
            state["numpy"] = _np.random.get_state()
        if _torch is not None:
            state["torch"] = _torch.get_rng_state()
        return state

    def set_rng(state):
        _random.setstate(state["random"])
        if _np is not None and "numpy" in state:
            _np.random.set_state(state["numpy"])
        if _torch is not None and "torch" in state:
            _torch.set_rng_state(state["torch"])

    def handle(data, buffers):
        op = data["op"]
        payload = {}
        if buffers:
            payload = _Unpickler(_io.BytesIO(bytes(buffers[0]))).load()
        for key, obj in payload.get("new", {}).items():
            handles[key] = obj
        if op == "release":
            for key in data.get("keys", []):
                handles.pop(key, None)
            return None, False
        if op == "rng":  # the grader adopts the state the notebook's own cells left
            return None, True
        target = resolve(data["target"])
        if op == "get":
            return target, False
        if op == "getattr":
            return getattr(target, data["name"]), False
        if op == "getitem":
            return target[payload["key"]], False
        if op == "len":
            return len(target), False
        if op == "contains":
            return payload["item"] in target, False
        if op == "list":
            out = []
            for item in target:
                out.append(item)
                if len(out) > MAX_LIST:
                    raise ValueError(f"more than {MAX_LIST} elements")
            return tuple(out), False
        if op == "call":
            if "rng" in payload:
                set_rng(payload["rng"])
            result = target(*payload.get("args", ()), **payload.get("kwargs", {}))
            return result, True
        raise ValueError(f"unknown request {op!r}")

    def on_open(comm, open_msg):
        def on_msg(msg):
            content = msg["content"]["data"]
            encoder = _Encoder()
            try:
                value, with_rng = handle(content, msg.get("buffers") or [])
                reply = {"ok": True, "value": encoder(value)}
                if with_rng:
                    reply["rng"] = encoder(rng_state())
            except BaseException as exc:  # noqa: BLE001 - every failure is reported as data
                encoder = _Encoder()
                reply = {"ok": False, "type": type(exc).__name__[:80],
                         "message": str(exc)[:2000]}
            comm.send(reply, buffers=encoder.buffers)

        comm.on_msg(on_msg)
        comm.send({"ready": True, "protocol": PROTOCOL})

    shell.kernel.comm_manager.register_target(TARGET, on_open)


try:
    _shell = get_ipython()  # noqa: F821 - defined in IPython startup files
except NameError:  # not in IPython: nothing to serve
    _shell = None
if _shell is not None and getattr(_shell, "kernel", None) is not None:
    _install(_shell)
del _shell, _install
