"""Warm kernels: one sandbox per submission, its kernels forked from a preloaded interpreter.

A kernel spends most of its start importing what every lab notebook imports first (torch,
torchvision, Captum, matplotlib: 4-6 s of CPU on a 2-core machine), and a lab has three
notebooks. PrairieLearn's answer, the "zygote", is used here: for one submission, the grader
starts one sandbox (:mod:`autograder.sandbox`, unchanged: namespaces, uid, caps, cgroup) whose
process imports the lab's modules and then forks a kernel for each notebook on request. The
fork starts with those modules imported and nothing else: no cell of any notebook has run in
the zygote, and each kernel is a fresh child (its startup file seeds it as before).

Trust: the zygote runs in the submission's sandbox, as the student's uid, and serves only that
submission's kernels, so nothing a kernel does to it (it may kill it or, being the same uid,
tamper with it) reaches another student or the grader. A kernel that killed it makes the next
start fall back to a fresh sandbox. What the kernels of one submission share is what the
student's own notebooks share on their machine: the working folder and home.

How a forked kernel fits jupyter_client: the "kernel process" jupyter_client launches and
watches is a small proxy (:data:`PROXY_CODE`, outside the sandbox, no student code) that asks
the zygote for a fork over a Unix socket in the sandbox's runtime folder, passes on the signals
it gets, and exits with the kernel's exit status; killed, its connection closes and the zygote
kills the kernel. The kernel manager (:class:`~autograder.sandbox.SandboxKernelManager` with
``warm``) interrupts the kernel itself and clears the runtime folder as before.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ._paths import CourseError

SOCKET_NAME = "zygote.sock"
# Always preloaded: what starting any kernel imports (ipykernel, IPython) and the agent.
BASE_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "IPython", "numpy", "torch")

# Runs inside the sandbox as the student's uid, as the namespace's init (pid 1: no signal sent
# from inside kills it, and orphans are its children). argv: socket path, the read end of a
# pipe whose write end only the grading worker holds (it ends when the worker does, killed or
# not; then so does the zygote, and, as the namespace's init, every process inside), modules.
# Its imports happen before it listens, so before any kernel, hence any student code, exists.
# One thread (forking a threaded process is unsafe): a select loop over the listening socket
# and one connection per kernel, reaping every child (orphans too) as they exit.
ZYGOTE_CODE = """\
import json, os, select, signal, socket, sys
path, lifeline, modules = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for name in modules:
    try:
        __import__(name)
    except Exception:
        pass
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path + ".new")
listener.listen(8)
os.rename(path + ".new", path)  # the grader waits for this name: bound and listening
kernels = {}  # connection -> pid

def start(conn, request):
    pid = os.fork()
    if pid == 0:
        listener.close()
        os.close(lifeline)
        for other in list(kernels) + [conn]:
            other.close()
        sys.argv = ["ipykernel_launcher", *request["args"]]
        sys.path.insert(0, os.getcwd())  # as `python -m ipykernel_launcher` in this folder
        import runpy
        try:
            runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        except BaseException:
            os._exit(1)
        os._exit(0)
    kernels[conn] = pid
    conn.sendall((json.dumps({"pid": pid}) + "\\n").encode())

while True:
    ready, _, _ = select.select([listener, lifeline, *kernels], [], [], 0.1)
    if lifeline in ready:
        os._exit(0)
    for sock in ready:
        if sock is listener:
            conn, _ = listener.accept()
            line = conn.makefile("r").readline()
            try:
                start(conn, json.loads(line))
            except (ValueError, KeyError, TypeError, OSError):
                conn.close()
            continue
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        pid = kernels[sock]
        if not data:  # the proxy is gone (killed with the kernel's manager): so is the kernel
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            del kernels[sock]
            sock.close()
            continue
        for line in data.decode(errors="replace").splitlines():
            try:
                os.kill(pid, int(json.loads(line)["signal"]))
            except (ValueError, KeyError, TypeError, ProcessLookupError):
                pass
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if not pid:
            break
        for conn, kernel in list(kernels.items()):
            if kernel == pid:
                code = os.waitstatus_to_exitcode(status)
                try:
                    conn.sendall((json.dumps({"exit": code}) + "\\n").encode())
                except OSError:
                    pass
                del kernels[conn]
                conn.close()
"""

# Runs outside the sandbox, as the grader, in place of the kernel's process (argv: the socket,
# the file to write the kernel's pid inside the sandbox to, then the kernel's arguments after
# ``-m ipykernel_launcher``). No student code runs here.
PROXY_CODE = """\
import json, signal, socket, sys
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(sys.argv[1])
conn.sendall((json.dumps({"args": sys.argv[3:]}) + "\\n").encode())
replies = conn.makefile("r")
started = replies.readline()
if not started:
    sys.exit("course: the warm kernel did not start")
with open(sys.argv[2], "w") as fh:
    fh.write(str(int(json.loads(started)["pid"])))
def forward(signum, frame):
    try:
        conn.sendall((json.dumps({"signal": signum}) + "\\n").encode())
    except OSError:
        pass
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(signum, forward)
line = replies.readline()
sys.exit(json.loads(line)["exit"] if line else 1)
"""


def lab_modules(trusted_dir: Path) -> list[str]:
    """The modules the lab's trusted notebooks import at module level, plus the kernel's own.

    Read from ``source/<lab>/*.ipynb`` with :mod:`ast` (no code runs); IPython magics are
    dropped. Relative imports and names that are not modules (``from x import y``: ``x`` is
    taken) are left out.
    """
    from . import notebooks

    found: dict[str, None] = dict.fromkeys(BASE_MODULES)
    for path in sorted(Path(trusted_dir).glob("*.ipynb")):
        try:
            cells = notebooks.read(path).cells
        except Exception:  # noqa: BLE001 - an unreadable source notebook fails elsewhere
            continue
        for cell in cells:
            if cell.cell_type != "code":
                continue
            code = "\n".join(line for line in cell.source.splitlines()
                             if not line.lstrip().startswith(("%", "!")))
            try:
                tree = ast.parse(code)
            except SyntaxError:
                continue
            for node in tree.body:
                if isinstance(node, ast.Import):
                    found.update(dict.fromkeys(alias.name for alias in node.names))
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found[node.module] = None
    return list(found)


class WarmSandbox:
    """One submission's sandbox running a zygote; kernels are forked from it on request.

    Args:
        sandbox: a prepared :class:`~autograder.sandbox.Sandbox` (home filled); closed with
            this object.
        source_env: the environment the kernel would have had.
        modules: what the zygote imports before it listens.
        timeout: seconds the zygote may take to import them and listen.
    """

    def __init__(self, sandbox, source_env: dict[str, str], modules: list[str],
                 timeout: float = 600.0) -> None:
        self.sandbox = sandbox
        self.socket = str(sandbox.run_dir / SOCKET_NAME)
        # python -P: no folder of the student's shadows the modules imported before any fork
        self.pid_file = sandbox.base / "kernel.pid"  # outside the sandbox: the proxy writes it
        lifeline, self._lifeline = os.pipe()
        argv = [sys.executable, "-P", "-c", ZYGOTE_CODE, self.socket, str(lifeline), *modules]
        command = sandbox.command(argv, source_env, as_pid_1=True)
        try:
            self.process = subprocess.Popen(
                command, cwd=str(sandbox.base), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, start_new_session=True, pass_fds=(lifeline,),
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        except BaseException:
            os.close(self._lifeline)
            raise
        finally:
            os.close(lifeline)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CourseError("the warm-kernel sandbox did not start")
            time.sleep(0.02)

    def alive(self) -> bool:
        """The zygote still runs (only the grader can stop it: it is pid 1 inside)."""
        return self.process.poll() is None

    def zygote_pid(self) -> int | None:
        """The zygote's pid outside the sandbox (pid 1 inside), while it runs."""
        from .sandbox import _descendants, _namespace_pid

        if self.process.poll() is not None:
            return None
        return next((p for p in _descendants(self.process.pid) if _namespace_pid(p) == 1), None)

    def kernel_namespace_pid(self) -> int | None:
        """The pid inside the sandbox of the kernel last forked, as its proxy wrote it."""
        try:
            return int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None

    def kernel_command(self, kernel_cmd: list[str]) -> list[str]:
        """The proxy's command for kernel command ``[python, -m, ipykernel_launcher, ...]``."""
        try:
            args = kernel_cmd[kernel_cmd.index("ipykernel_launcher") + 1:]
        except ValueError as exc:
            raise CourseError(f"not an ipykernel command: {kernel_cmd}") from exc
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()  # the last kernel's
        return [sys.executable, "-I", "-S", "-c", PROXY_CODE, self.socket, str(self.pid_file),
                *args]

    def close(self) -> None:
        """Stop the zygote and whatever is left, then the sandbox (uid, cgroup, scratch)."""
        if self._lifeline >= 0:
            os.close(self._lifeline)
            self._lifeline = -1
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
        self.sandbox.close()


_SHARED: dict[tuple, WarmSandbox] = {}
_AT_EXIT: list[bool] = []


def shared(key: tuple, make) -> WarmSandbox:
    """The running warm sandbox for ``key`` (one per submission), made by ``make()`` if there
    is none or its zygote died."""
    box = _SHARED.get(key)
    if box is not None and not box.alive():
        box.close()
        box = None
    if box is None:
        box = _SHARED[key] = make()
        if not _AT_EXIT:  # a worker grades one submission, then exits: its sandbox goes too
            import atexit

            atexit.register(close_all)
            _AT_EXIT.append(True)
    return box


def close_all() -> None:
    """Close every warm sandbox of this process (the grading worker, at its end)."""
    while _SHARED:
        _, box = _SHARED.popitem()
        box.close()
