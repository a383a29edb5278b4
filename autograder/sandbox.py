"""The sandbox every submission's kernel runs in: bubblewrap namespaces and an unprivileged uid.

Only the kernel runs student code, so only the kernel is sandboxed. The grading worker (trusted)
keeps the notebook, hidden tests included, in memory, sends cells to the kernel over ZMQ sockets
on Unix paths (they work across network namespaces, TCP loopback would not) and computes and
records the scores itself. The kernel runs under ``bwrap`` (bubblewrap) with:

- private pid, network, IPC, UTS and cgroup namespaces: no network at all (a connection fails at
  once), no view of the grading processes or their environment (``--clearenv``);
- a root file system built from nothing: the read-only system folders and Python environment,
  the course's helper package, the torch weights folder, and a writable scratch home whose
  ``work/`` folder (the kernel's working folder) holds a copy of the submission's own files, no
  notebook. Not ``source/``, not the gradebook, not other students, not the grader's home;
- when the grader runs as root (CI, a grading server): no user namespace, and the kernel drops
  to a uid of its own (:data:`UID_BASE` and up, one per running kernel, so that the process cap,
  counted per uid, is each kernel's own) with no capabilities and ``no_new_privs``; when it runs
  as an ordinary user: a user namespace, and the kernel keeps that user's uid;
- rlimits set inside the sandbox with ``prlimit``: processes (threads count), CPU seconds, file
  size; RLIMIT_DATA comes from the worker and is inherited;
- size caps on every writable file system: the private ``/tmp`` and ``/dev/shm`` are tmpfs of
  ``tmp_mb`` each, the home a tmpfs of ``home_mb`` filled with a copy of the prepared scratch
  home (read-only at :data:`HOME_SOURCE`) before the uid drop; ``/dev`` is read-only;
- where this process can make a memory cgroup (v1 or v2, as root as a rule), the kernel, bwrap
  and every process they start run in a fresh cgroup capped at ``memory_mb`` with swap off, so
  shared memory and tmpfs files count too (:func:`memory_cap_description`);
- keyrings: the kernel gets a fresh session keyring of its own (not the grader's), and in root
  mode the uid's user, user-session and persistent keyrings are cleared before the kernel starts
  and after it ends, and any process left with that uid is killed before the uid is released;
- in root mode the runtime folder (connection file, sockets: the one host folder the kernel
  writes to) is given back to root as soon as the kernel has made its sockets.

After every cell the grader kills every process left in the kernel's pid namespace except the
kernel (:meth:`SandboxKernelManager.kill_strays`), so a fork bomb costs one failed cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import functools
import importlib.util
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client import AsyncKernelManager
from nbclient.util import run_sync
from traitlets import Bool, Integer, List, Unicode

from ._paths import CourseError
from .config import DEFAULT_MAX_PROCESSES

ROOT_MODE = "root"  # grader is root: privileged bwrap, kernel drops to a uid of its own
USER_MODE = "user"  # grader is a user: bwrap in a user namespace, kernel keeps that uid
NO_SANDBOX = "none"
MODES = (ROOT_MODE, USER_MODE, NO_SANDBOX)

UID_BASE = 47000  # uids UID_BASE .. UID_BASE + UID_COUNT - 1, skipping any in /etc/passwd
UID_COUNT = 1000
MAX_FILE_BYTES = 2 * 2**30  # RLIMIT_FSIZE: no single file written above 2 GiB
DEFAULT_TMP_MB = 1024  # each of the kernel's /tmp and /dev/shm (tmpfs, RAM)
DEFAULT_HOME_MB = 1024  # the kernel's home (tmpfs, RAM), its copy of the submission included
MB = 2**20
MAX_PARENT_CHARS = 60  # a Unix socket path has at most 107 bytes: parent/course-sandbox-*/run/...
HOME = "/home/student"  # the kernel's home inside the sandbox; its cwd is HOME/work
WORKDIR = f"{HOME}/work"
HOME_SOURCE = "/run/course-home"  # the prepared scratch home, read-only, copied into HOME
CGROUP_PREFIX = "course-kernel-"  # memory cgroups made here: course-kernel-<worker pid>-<n>
# keyctl's syscall number per machine (os.uname().machine); elsewhere keyrings are left alone
KEYCTL_SYSCALL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "i686": 288, "i386": 288,
                  "armv7l": 311, "ppc64le": 271, "s390x": 280}
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`, Fedora: "
                "`dnf install bubblewrap`)")
# /etc is not bound whole: a system-wide Jupyter or nbgrader config there may hold a database
# URL with a password. These are what Python, fontconfig, Graphviz and the C library need.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "fonts", "localtime",
             "nsswitch.conf", "host.conf", "hosts", "mime.types", "ssl", "ca-certificates")
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
OPTIONAL_DIRS = ("/var/cache/fontconfig",)
# The environment a kernel gets; everything else of the grader's environment stays outside.
PASSED_ENV = ("MPLBACKEND", "PYTHONHASHSEED", "COURSE_SEED", "OMP_NUM_THREADS",
              "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NBGRADER_EXECUTION", "LANG", "LC_ALL")


class SandboxUnavailable(CourseError):
    """``course grade`` was asked to sandbox submissions and cannot."""


@dataclass(frozen=True)
class Protection:
    """What protection is in force: ``mode`` is one of :data:`MODES`."""

    mode: str
    detail: str = ""  # bwrap's version, or why no sandbox is available

    @property
    def active(self) -> bool:
        return self.mode != NO_SANDBOX

    def describe(self) -> str:
        """One line for the start and the summary of ``course grade`` and ``course check``."""
        if self.mode == ROOT_MODE:
            return (f"Sandbox: {self.detail}; each kernel runs as an unprivileged uid of its "
                    "own, without network, seeing only its scratch copy of the submission and "
                    "the read-only Python environment; with a process cap (and course grade's "
                    "CPU and memory caps).")
        if self.mode == USER_MODE:
            return (f"Sandbox: {self.detail} in a user namespace; each kernel runs as your own "
                    f"user ({_user_name()}), without network, seeing only its scratch copy of "
                    "the submission and the read-only Python environment; with a process cap "
                    "(and course grade's CPU and memory caps).")
        return ("WARNING: NO SANDBOX: submitted code runs with the grader's rights and can read "
                "hidden tests, the gradebook and other students' work, write files and use the "
                f"network ({self.detail}).")


def _user_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def _bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def detect() -> Protection:
    """The sandbox this machine offers, checked by really starting one (cached per process)."""
    bwrap = _bwrap()
    if bwrap is None:
        return Protection(NO_SANDBOX, f"bubblewrap is not installed: {INSTALL_HINT}")
    for tool in ("prlimit",) + (("setpriv",) if os.geteuid() == 0 else ()):
        if shutil.which(tool) is None:
            return Protection(NO_SANDBOX, f"`{tool}` (util-linux) is missing")
    mode = ROOT_MODE if os.geteuid() == 0 else USER_MODE
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True,
                             check=False).stdout.strip() or "bubblewrap"
    probe = [bwrap, *_namespace_args(mode), "--ro-bind", "/", "/", "--proc", "/proc",
             "--dev", "/dev", *_tmpfs("/tmp", 1), "--"]
    if mode == ROOT_MODE:
        probe += _drop_privileges(_free_uid_candidates()[0]) + ["true"]
    else:
        probe += ["true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Protection(NO_SANDBOX, f"bubblewrap does not start: {exc}")
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        hint = ("" if mode == ROOT_MODE else "; unprivileged user namespaces may be disabled "
                "(sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces)")
        if "--size" in why or "--perms" in why:  # size caps of /tmp, /dev/shm and the home
            hint = ("; the tmpfs size caps need bubblewrap 0.7 or later, installed without "
                    "the setuid bit (a setuid bwrap refuses --size)")
        return Protection(NO_SANDBOX, f"bubblewrap cannot create a sandbox here: {why}{hint}")
    return Protection(mode, version)


def require(sandbox: bool) -> Protection:
    """The protection ``course grade`` runs with; raise when a sandbox is wanted but missing."""
    if not sandbox:
        return Protection(NO_SANDBOX, "--no-sandbox was given")
    found = detect()
    if not found.active:
        raise SandboxUnavailable(
            f"No sandbox for untrusted submissions: {found.detail}. Refusing to grade: "
            f"{INSTALL_HINT} and run again, or pass --no-sandbox to grade trusted submissions "
            "with the grader's full rights.")
    return found


def _namespace_args(mode: str) -> list[str]:
    common = ["--die-with-parent", "--unshare-ipc", "--unshare-pid", "--unshare-net",
              "--unshare-uts", "--unshare-cgroup-try"]
    if mode == USER_MODE:
        return ["--unshare-user", *common]
    # Privileged bwrap (root, no user namespace) drops every capability by default; keep the
    # three setpriv needs to switch uid, and let setpriv drop them all.
    return [*common, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID",
            "--cap-add", "CAP_SETPCAP"]


def _drop_privileges(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def _passwd_uids() -> set[int]:
    try:
        return {p.pw_uid for p in pwd.getpwall()}
    except OSError:  # pragma: no cover - no passwd database at all
        return set()


def _free_uid_candidates() -> list[int]:
    taken = _passwd_uids()
    return [u for u in range(UID_BASE, UID_BASE + UID_COUNT) if u not in taken]


def _process_uids() -> dict[int, set[int]]:
    """Every process's real, effective, saved and file-system uids, by pid.

    Read from ``status``: the owner of ``/proc/PID`` is root for a process that made itself
    non-dumpable, whatever its uid.
    """
    uids: dict[int, set[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/status") as fh:
                line = next((ln for ln in fh if ln.startswith("Uid:")), "")
        except OSError:
            continue
        uids[int(entry.name)] = {int(u) for u in line.split()[1:]}
    return uids


def _running_uids() -> set[int]:
    return set().union(*_process_uids().values())


def _kill_until_gone(find: Callable[[], list[int]], rounds: int) -> int:
    """SIGKILL the pids ``find()`` returns until it returns none (or ``rounds`` are used)."""
    killed = 0
    for _ in range(rounds):
        pids = find()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)  # an orphan adopted by this process: see below
        time.sleep(0.02)
    return killed


def adopt_orphans() -> bool:
    """Make this process the reaper of its descendants' orphans (``PR_SET_CHILD_SUBREAPER``).

    Killing a sandbox kills bubblewrap and what runs inside at once, so the process inside is
    left to the machine's init, which may take its time to reap it: on the course's CI machines
    it stayed a zombie of the sandbox's uid for 1.5 s, and :func:`kill_uid` waits until no
    process of the uid is left. Adopted by the grading worker instead, it is reaped as soon as
    it is killed. Returns whether Linux took the request.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def kill_uid(uid: int, wait_s: float = 5.0) -> int:
    """SIGKILL every process running with ``uid`` (any of its uids); returns how many."""
    return _kill_until_gone(
        lambda: [pid for pid, uids in _process_uids().items() if uid in uids],
        rounds=max(1, int(wait_s / 0.02)))


# Run as root (argv: the uid, keyctl's syscall number): become the uid, join a session keyring
# of its own, empty the uid's user, user-session and persistent keyrings. Exit status 0 when
# done or when keyrings are unavailable to everyone here (keyctl blocked or absent). Started as
# root and then switched: the uid may not reach the Python environment on the host.
CLEAR_KEYS_CODE = """\
import ctypes, errno, os, sys
uid, number = int(sys.argv[1]), int(sys.argv[2])
os.setgroups([])
os.setresgid(uid, uid, uid)
os.setresuid(uid, uid, uid)
call = ctypes.CDLL(None, use_errno=True).syscall
call.restype = ctypes.c_long
def keyctl(*args):
    done = call(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    return done, (ctypes.get_errno() if done < 0 else 0)
if keyctl(1, 0)[1] in (errno.ENOSYS, errno.EPERM):  # KEYCTL_JOIN_SESSION_KEYRING, new one
    sys.exit(0)
ring, err = keyctl(22, -1, -3)  # KEYCTL_GET_PERSISTENT of this uid, into that session
rings = [-4, -5] + ([ring] if ring > 0 else [])  # user, user-session keyrings
if err not in (0, errno.EOPNOTSUPP, errno.ENOSYS):
    sys.exit(f"keyctl get_persistent: {errno.errorcode.get(err, err)}")
for ring in rings:
    err = keyctl(7, ring)[1]  # KEYCTL_CLEAR
    if err:
        sys.exit(f"keyctl clear {ring}: {errno.errorcode.get(err, err)}")
"""


def clear_keyrings(uid: int) -> None:
    """Empty the user, user-session and persistent keyrings of ``uid`` (root only).

    Kernel keyrings are per uid, not per namespace: a key one kernel links there would be
    found by the next kernel running with the same uid.
    """
    number = KEYCTL_SYSCALL.get(os.uname().machine)
    if number is None:
        return
    done = subprocess.run([sys.executable, "-I", "-S", "-c", CLEAR_KEYS_CODE, str(uid),
                           str(number)], env={}, cwd="/", capture_output=True, text=True,
                          timeout=30, check=False)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise CourseError(f"Could not clear the keyrings of sandbox uid {uid}: {why}. Run "
                          "the grader as root on a Linux kernel with keyrings, or report it.")


def _lock_dir() -> Path:
    """A folder only this user can write, holding one lock file per uid in use."""
    folder = Path(tempfile.gettempdir()) / f"course-sandbox-uids-{os.geteuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    info = folder.lstat()
    if info.st_uid != os.geteuid() or not folder.is_dir() or folder.is_symlink():
        raise CourseError(f"{folder} is not a folder of this user's: remove it and run again.")
    return folder


def allocate_uid() -> tuple[int, int]:
    """A uid no other kernel of this machine uses now: (uid, fd of its lock, held until closed).

    Each grading worker is its own process, so the uids are handed out with ``flock``ed files;
    a uid that owns a running process (left over from a killed run) is skipped too.
    """
    folder = _lock_dir()
    busy = _running_uids()
    for uid in _free_uid_candidates():
        if uid in busy:
            continue
        fd = os.open(folder / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return uid, fd
    raise CourseError(f"All {UID_COUNT} sandbox uids from {UID_BASE} are in use.")


def python_paths() -> list[str]:
    """Folders the kernel's Python needs, read-only: the environment, its base, course_lib."""
    paths = [sys.prefix, os.path.realpath(sys.prefix), sys.base_prefix,
             os.path.realpath(sys.base_prefix)]
    package = course_lib_dir()
    if package is not None:
        paths.append(package)
    return _outermost(p for p in paths if not _under(p, SYSTEM_DIRS))


def course_lib_dir() -> str | None:
    """The ``course_lib`` package folder this process imports (resolved), or None.

    That is the one the harness's setup cells use: a course folder's own ``course_lib/``
    when grading runs there, else the installed one. The kernel must import the same (see
    :func:`kernel_env`); an editable install's package lies outside the environment.
    """
    spec = importlib.util.find_spec("course_lib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


def torch_home(env: dict[str, str]) -> str | None:
    """The torch cache folder the kernel reads its weights from (read-only), if it exists."""
    home = env.get("TORCH_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return os.path.realpath(home) if os.path.isdir(home) else None


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _outermost(paths) -> list[str]:
    kept: list[str] = []
    for p in sorted(set(paths), key=len):
        if not _under(p, kept):
            kept.append(p)
    return kept


@dataclass
class Limits:
    """Per-kernel caps; 0 means none.

    ``memory_mb``: the kernel's memory cgroup, where one can be made (see
    :func:`memory_cap_description`). ``tmp_mb``: size of each of ``/tmp`` and ``/dev/shm``.
    ``home_mb``: size of the home, a tmpfs filled with a copy of the prepared scratch home; 0
    binds the scratch home read-write instead, uncapped. :class:`SandboxKernelManager` passes
    :data:`DEFAULT_TMP_MB` and :data:`DEFAULT_HOME_MB` unless configured otherwise.
    """

    max_processes: int = DEFAULT_MAX_PROCESSES
    cpu_seconds: int = 0
    max_file_bytes: int = MAX_FILE_BYTES
    memory_mb: int = 0
    tmp_mb: int = 0
    home_mb: int = 0


# --- memory cgroups ----------------------------------------------------------------------


@dataclass(frozen=True)
class CgroupPlace:
    """Where kernels' memory cgroups are made: cgroup ``version`` 1 or 2, under ``parent``."""

    version: int
    parent: Path


def _unescape(field: str) -> str:
    """A path of ``/proc/self/mountinfo``, whose spaces and such are octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _cgroup_mounts() -> list[tuple[str, str, str, set[str]]]:
    """(type, root, mount point, super options) of each cgroup file system mounted here."""
    mounts = []
    try:
        with open("/proc/self/mountinfo") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            mounts.append((tail[0], _unescape(fields[3]), _unescape(fields[4]),
                           set(tail[2].split(","))))
    return mounts


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per v1 controller, and under ``""`` its v2 path."""
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return {}
    paths = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _cgroup_folder(mount_point: str, root: str, path: str) -> Path | None:
    """The folder of cgroup ``path`` in a hierarchy mounted at ``mount_point`` from ``root``."""
    if root != "/":
        if path != root and not path.startswith(root.rstrip("/") + "/"):
            return None
        path = path[len(root):]
    folder = Path(mount_point, path.lstrip("/"))
    return folder if folder.is_dir() else None


def _cgroup_candidates() -> list[CgroupPlace]:
    """Places to try, best first: v1 memory hierarchy, then v2 (own cgroup, then its root)."""
    own, places = _own_cgroups(), []
    mounts = _cgroup_mounts()
    for kind, root, point, options in mounts:
        if kind == "cgroup" and "memory" in options and "memory" in own:
            folder = _cgroup_folder(point, root, own["memory"])
            places += [CgroupPlace(1, folder)] if folder else []
    for kind, root, point, _ in mounts:
        if kind == "cgroup2" and "" in own:
            for folder in (_cgroup_folder(point, root, own[""]), Path(point)):
                if folder is not None and CgroupPlace(2, folder) not in places:
                    places.append(CgroupPlace(2, folder))
    return places


def _words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []


def _memory_delegated(place: CgroupPlace) -> bool:
    """Whether children of ``place`` get the memory controller (v2: enable it if need be)."""
    if place.version == 1:
        return True
    if "memory" not in _words(place.parent / "cgroup.controllers"):
        return False
    if "memory" in _words(place.parent / "cgroup.subtree_control"):
        return True
    try:  # refused (EBUSY) in a cgroup that holds processes, its root excepted
        (place.parent / "cgroup.subtree_control").write_text("+memory")
    except OSError:
        return False
    return True


def _pid_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _sweep_stale(place: CgroupPlace) -> None:
    """Remove the empty cgroups that killed workers left (their pid is gone)."""
    for folder in place.parent.glob(f"{CGROUP_PREFIX}*"):
        pid = folder.name[len(CGROUP_PREFIX):].split("-")[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            try:
                folder.rmdir()
            except OSError:
                pass


@functools.lru_cache(maxsize=1)
def memory_cgroup_place() -> CgroupPlace | None:
    """Where this process can make memory-capped cgroups for its kernels, or None (cached).

    Checked by making one: as a rule only root can, in its own cgroup (v1) or in a v2 cgroup
    that delegates the memory controller.
    """
    for place in _cgroup_candidates():
        if not _memory_delegated(place):
            continue
        try:
            KernelCgroup(place, 64).close()
        except OSError:
            continue
        _sweep_stale(place)
        return place
    return None


def memory_cap_description() -> str:
    """One line on what ``--memory`` (a kernel's ``memory_mb``) covers on this machine."""
    place = memory_cgroup_place()
    if place is not None:
        return (f"--memory caps each kernel with a cgroup v{place.version} memory limit, swap "
                "off: everything its processes hold counts (heap, shared memory, files in its "
                "/tmp, /dev/shm and home), and a kernel that passes it is killed (a large "
                "private allocation fails first with MemoryError).")
    return ("--memory caps each kernel's private memory only (RLIMIT_DATA: heap and private "
            "mappings), as this machine offers the grader no memory cgroup (run it as root "
            "for one): shared memory and the tmpfs /tmp, /dev/shm and home are held by their "
            "own size caps instead.")


class KernelCgroup:
    """A fresh memory cgroup of ``megabytes`` (swap off) for one kernel and all it starts."""

    def __init__(self, place: CgroupPlace, megabytes: int) -> None:
        self.place = place
        name = f"{CGROUP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        self.path: Path | None = place.parent / name
        self.path.mkdir()
        try:
            self._limit(megabytes * MB)
        except OSError:
            self.close()
            raise

    @property
    def procs(self) -> Path:
        """The file a process writes its pid to, to join."""
        assert self.path is not None
        return self.path / "cgroup.procs"

    def _limit(self, limit: int) -> None:
        assert self.path is not None
        if self.place.version == 1:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
            optional = {"memory.memsw.limit_in_bytes": limit, "memory.swappiness": 0}
        else:
            (self.path / "memory.max").write_text(str(limit))
            optional = {"memory.swap.max": 0, "memory.oom.group": 1}
        for name, value in optional.items():  # absent without swap accounting
            if (self.path / name).exists():
                (self.path / name).write_text(str(value))

    def pids(self) -> list[int]:
        return [int(p) for p in _words(self.procs)] if self.path is not None else []

    def close(self, wait_s: float = 5.0) -> None:
        """Kill what still runs in the cgroup and remove it."""
        if self.path is None:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                self.path.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:  # EBUSY: the killed processes are not gone yet
                if exc.errno != errno.EBUSY:
                    break
            time.sleep(0.02)
        self.path = None


# Run in the sandbox before the kernel, as root in root mode (argv: the prepared home, HOME,
# the working folder, the uid to give the files to or "", the rest of the command): copy the
# prepared home into HOME, a size-capped tmpfs, give it to the kernel's uid, go to the working
# folder, and exec the rest (setpriv, then the kernel).
FILL_HOME_CODE = """\
import os, shutil, sys
source, home, work, owner = sys.argv[1:5]
try:
    for entry in os.scandir(source):
        dest = os.path.join(home, entry.name)
        if entry.is_dir(follow_symlinks=False):
            shutil.copytree(entry.path, dest, symlinks=True)
        else:
            shutil.copy2(entry.path, dest, follow_symlinks=False)
    os.chdir(work)
    for top, dirs, files in os.walk(home) if owner else ():
        for name in dirs + files:
            os.lchown(os.path.join(top, name), int(owner), int(owner))
    if owner:
        os.lchown(home, int(owner), int(owner))
except OSError as exc:
    sys.exit(f"course sandbox: cannot fill the kernel's home {home}: {exc}")
os.execvp(sys.argv[5], sys.argv[5:])
"""


def _tmpfs(dest: str, megabytes: int) -> list[str]:
    """bwrap's arguments mounting a tmpfs anyone may write to (sticky) at ``dest``."""
    size = ["--size", str(megabytes * MB)] if megabytes else []
    return [*size, "--perms", "1777", "--tmpfs", dest]


def bwrap_command(mode: str, argv: list[str], *, uid: int | None, home: str, run_dir: str,
                  env: dict[str, str], limits: Limits, bwrap: str = "bwrap",
                  extra_ro: list[str] | None = None,
                  identity: tuple[str, str] | None = None,
                  python: str = sys.executable, as_pid_1: bool = False) -> list[str]:
    """The command line running kernel ``argv`` in a sandbox (pure: builds, runs nothing).

    Args:
        mode: :data:`ROOT_MODE` (needs ``uid``) or :data:`USER_MODE`.
        argv: the kernel's command, e.g. ``[python, -m, ipykernel_launcher, -f, CONN]``.
        home: the prepared scratch home. With ``limits.home_mb``, bound read-only at
            :data:`HOME_SOURCE` and copied (by ``python``, before the uid drop) into
            :data:`HOME`, a tmpfs of that size given to the kernel's uid; without, bound
            read-write as :data:`HOME`. Its ``work/`` is the working folder.
        run_dir: folder of the connection file and IPC sockets, bound read-write at its path.
        env: the whole environment the kernel gets.
        limits: process, CPU, file-size caps; sizes of ``/tmp``, ``/dev/shm`` and the home.
        extra_ro: more folders bound read-only at their own path (Python, torch weights).
        identity: files shown as ``/etc/passwd`` and ``/etc/group`` (the student, root).
        python: the Python that fills the home (the kernel's own, read-only inside).
        as_pid_1: ``argv`` is the namespace's init, pid 1 (a warm sandbox's zygote: a signal
            sent from inside cannot kill it, and it reaps orphans); else bwrap's own init is
            pid 1 and ``argv`` pid 2.
    """
    if mode not in (ROOT_MODE, USER_MODE):
        raise ValueError(f"Expected sandbox mode {ROOT_MODE!r} or {USER_MODE!r}, got {mode!r}")
    if mode == ROOT_MODE and uid is None:
        raise ValueError("root mode needs the uid the kernel drops to")
    args = [bwrap, *_namespace_args(mode), *(["--as-pid-1"] if as_pid_1 else []), "--clearenv"]
    for name, value in sorted(env.items()):
        args += ["--setenv", name, value]
    made = {"/"}

    def parents(dest: str) -> list[str]:
        out = []
        for parent in reversed(Path(dest).parents):
            p = str(parent)
            if p not in made and not _under(p, SYSTEM_DIRS):
                out += ["--dir", p]  # 0755: bwrap would make missing parents 0700 as root
                made.add(p)
        made.add(dest)
        return out

    args += ["--tmpfs", "/"]
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
        made.add(path)
    # /proc, /dev and the tmpfs before any bind: a tmpfs on /tmp mounted later would hide a
    # Python environment or weights folder under /tmp (a CI checkout there, for one). /dev is
    # a tmpfs that a user-namespace sandbox could fill: read-only, but for its own /dev/shm.
    args += ["--proc", "/proc", "--dev", "/dev", *_tmpfs("/tmp", limits.tmp_mb),
             *_tmpfs("/dev/shm", limits.tmp_mb), "--remount-ro", "/dev"]
    made.update(("/proc", "/dev", "/tmp"))
    args += ["--dir", "/etc"]
    made.add("/etc")
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    if identity:
        args += ["--ro-bind", identity[0], "/etc/passwd", "--ro-bind", identity[1], "/etc/group"]
    for path in OPTIONAL_DIRS:
        args += [*parents(path), "--ro-bind-try", path, path]
    for path in _outermost(extra_ro or []):
        args += [*parents(path), "--ro-bind", path, path]
    if limits.home_mb:  # a tmpfs, filled by FILL_HOME_CODE from the prepared home
        args += [*parents(HOME), "--size", str(limits.home_mb * MB), "--perms", "0700",
                 "--tmpfs", HOME, *parents(HOME_SOURCE), "--ro-bind", home, HOME_SOURCE]
        if mode == ROOT_MODE:  # for FILL_HOME_CODE, as root; setpriv drops them
            args += ["--cap-add", "CAP_CHOWN", "--cap-add", "CAP_DAC_READ_SEARCH"]
    else:
        args += [*parents(HOME), "--bind", home, HOME]
    args += [*parents(run_dir), "--bind", run_dir, run_dir]
    args += ["--chdir", "/" if limits.home_mb else WORKDIR, "--remount-ro", "/"]
    caps = [f"--nproc={limits.max_processes}"] if limits.max_processes else []
    caps += [f"--cpu={limits.cpu_seconds}"] if limits.cpu_seconds else []
    caps += [f"--fsize={limits.max_file_bytes}"] if limits.max_file_bytes else []
    # Private memory (heap, anonymous mappings): a large allocation fails with MemoryError
    # before the cgroup (if any) kills the kernel. Set here, not on the grading worker, whose
    # harness holds the course's own models.
    caps += [f"--data={limits.memory_mb * 2**20}"] if limits.memory_mb else []
    args += ["--", "prlimit", *caps, "--"]
    if limits.home_mb:
        owner = str(uid) if mode == ROOT_MODE else ""
        args += [python, "-I", "-S", "-c", FILL_HOME_CODE, HOME_SOURCE, HOME, WORKDIR, owner]
    if mode == ROOT_MODE:
        args += _drop_privileges(uid)
    return args + list(argv)


def kernel_env(source: dict[str, str], torch_dir: str | None) -> dict[str, str]:
    """The kernel's whole environment: a few settings of ``source``, nothing secret.

    ``PYTHONPATH`` names the folder of the ``course_lib`` the grader imports, so that the
    notebook's instructor cells and the harness use the same package.
    """
    env = {name: source[name] for name in PASSED_ENV if name in source}
    env.setdefault("LANG", "C.UTF-8")
    env.update(HOME=HOME, USER="student", LOGNAME="student", TMPDIR="/tmp",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin",
                                     "/usr/bin", "/bin"]),
               IPYTHONDIR=f"{HOME}/.ipython", MPLCONFIGDIR=f"{HOME}/.config/matplotlib")
    # ipykernel watches JPY_PARENT_PID and exits when its parent changes; inside the pid
    # namespace its parent is bwrap's init, pid 1, which it never watches (bwrap's
    # --die-with-parent ends the kernel with the grader). Unset, it prints its connection
    # details on the grader's stdout.
    env["JPY_PARENT_PID"] = "1"
    if torch_dir:
        env["TORCH_HOME"] = torch_dir
    package = course_lib_dir()
    if package is not None:  # only the package folder is mounted, not the rest of its parent
        env["PYTHONPATH"] = os.path.dirname(package)
    return env


def _matplotlib_cache(source: dict[str, str]) -> Path | None:
    """The grader's matplotlib font cache folder, without importing matplotlib."""
    for folder in (source.get("MPLCONFIGDIR"), os.path.expanduser("~/.cache/matplotlib"),
                   os.path.expanduser("~/.matplotlib")):
        if folder and any(Path(folder).glob("fontlist-*.json")):
            return Path(folder)
    return None


# Run on the host by the grader's Python just before bwrap, in the process that becomes bwrap
# (argv: the cgroup.procs file to join or "", keyctl's syscall number or 0, bwrap's command).
LAUNCH_CODE = """\
import ctypes, errno, os, sys
procs, number, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if procs:
    with open(procs, "w") as fh:
        fh.write(str(os.getpid()))
if number:  # KEYCTL_JOIN_SESSION_KEYRING, NULL: a new session keyring, not the grader's
    call = ctypes.CDLL(None, use_errno=True).syscall
    if call(ctypes.c_long(number), ctypes.c_long(1), ctypes.c_long(0)) < 0:
        if ctypes.get_errno() not in (errno.ENOSYS, errno.EPERM):
            sys.exit(f"course sandbox: no session keyring: {os.strerror(ctypes.get_errno())}")
os.execvp(argv[0], argv)
"""


def _tree_bytes(folder: Path) -> int:
    """What the files under ``folder`` take on a tmpfs: whole pages, links not followed."""
    total = 0
    for path in [folder, *folder.rglob("*")]:
        info = path.lstat()
        total += 4096 if stat.S_ISDIR(info.st_mode) else -(-info.st_size // 4096) * 4096
    return total


class Sandbox:
    """One kernel's sandbox: uid, scratch home, runtime folder, memory cgroup.

    :meth:`close` ends what is left of the kernel and removes them all.
    """

    def __init__(self, mode: str, limits: Limits, parent: str = "") -> None:
        """``parent``: where to make its folder (default: the temp folder). ``course grade``
        passes a folder it deletes itself, so nothing is left when it kills a worker."""
        self.mode, self.limits = mode, limits
        if parent and len(parent) > MAX_PARENT_CHARS:  # IPC socket paths are short
            parent = ""
        self.uid, self._lock = allocate_uid() if mode == ROOT_MODE else (None, None)
        self.cgroup: KernelCgroup | None = None
        self.base = Path(tempfile.mkdtemp(prefix="course-sandbox-", dir=parent or None))
        self.home = self.base / "home"
        self.run_dir = self.base / "run"
        try:
            self.home.mkdir()
            self.run_dir.mkdir()
            place = memory_cgroup_place() if limits.memory_mb else None
            if place is not None:
                self.cgroup = KernelCgroup(place, limits.memory_mb)
            if self.uid is not None:  # what an earlier kernel of this uid left in its keyrings
                clear_keyrings(self.uid)
        except BaseException:
            self.close()
            raise

    def prepare(self, folder: str | None, source_env: dict[str, str]) -> None:
        """Fill the scratch home: the submission's own files (no notebook) and startup files.

        Args:
            folder: the folder the kernel would have run in; its files except notebooks are
                copied to ``work/`` (symbolic links stay links, never followed).
            source_env: the environment the kernel would have had (``IPYTHONDIR`` names the
                startup files to copy).
        """
        work = self.home / "work"
        if folder and os.path.isdir(folder):
            skip = shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints")

            def ignore(where: str, names: list[str]) -> set[str]:
                # never the sandbox itself: a kernel folder holding the temp folder would copy
                # the copy into itself until the disk is full
                own = {n for n in names if Path(where, n).resolve() == self.base.resolve()}
                return set(skip(where, names)) | own

            shutil.copytree(folder, work, symlinks=True, ignore=ignore)
        else:
            work.mkdir()
        ipython = source_env.get("IPYTHONDIR")
        startup = Path(ipython) / "profile_default" / "startup" if ipython else None
        if startup and startup.is_dir():
            shutil.copytree(startup, self.home / ".ipython" / "profile_default" / "startup")
        mpl = _matplotlib_cache(source_env)
        if mpl is not None:  # a warm font cache saves every kernel a second or more
            dest = self.home / ".config" / "matplotlib"
            dest.mkdir(parents=True)
            for path in mpl.glob("fontlist-*.json"):
                shutil.copyfile(path, dest / path.name)
        self._check_home_size(folder)
        if self.uid is not None:  # a capped home is copied and given to the uid inside
            home = [] if self.limits.home_mb else [self.home, *self.home.rglob("*")]
            for path in [*home, self.run_dir, *self.run_dir.iterdir()]:
                os.lchown(path, self.uid, self.uid)

    def seal_run_dir(self) -> None:
        """Give the runtime folder and the connection file back to this process's user."""
        for path, mode in ((self.run_dir / "kernel.json", 0o644), (self.run_dir, 0o755)):
            if path.exists():
                os.chown(path, os.geteuid(), os.getegid())
                os.chmod(path, mode)

    def unseal_run_dir(self) -> None:
        """Root mode: give the runtime folder to the uid again, for a warm sandbox's next
        kernel to make its sockets in (sealed again as soon as it has)."""
        if self.uid is None:
            return
        for path in (self.run_dir, self.run_dir / "kernel.json"):
            if path.exists():
                os.lchown(path, self.uid, self.uid)

    def _check_home_size(self, folder: str | None) -> None:
        cap = self.limits.home_mb
        used = _tree_bytes(self.home) if cap else 0
        if used > cap * MB:
            raise CourseError(
                f"The files of {folder} take {used / MB:.0f} MB, more than the {cap} MB of a "
                "sandboxed kernel's home: remove the large files from the folder, or raise the "
                "home cap (SandboxKernelManager.home_mb).")

    def command(self, argv: list[str], source_env: dict[str, str],
                as_pid_1: bool = False) -> list[str]:
        """The whole command: :data:`LAUNCH_CODE` (joins the cgroup), then bwrap's."""
        torch_dir = torch_home(source_env)
        extra = python_paths() + ([torch_dir] if torch_dir else [])
        inner = bwrap_command(self.mode, argv, uid=self.uid, home=str(self.home),
                              run_dir=str(self.run_dir), env=kernel_env(source_env, torch_dir),
                              limits=self.limits, bwrap=_bwrap() or "bwrap", extra_ro=extra,
                              identity=self._identity_files(), as_pid_1=as_pid_1)
        procs = str(self.cgroup.procs) if self.cgroup is not None else ""
        number = KEYCTL_SYSCALL.get(os.uname().machine, 0)
        return [sys.executable, "-I", "-S", "-c", LAUNCH_CODE, procs, str(number), *inner]

    def _identity_files(self) -> tuple[str, str]:
        """``/etc/passwd`` and ``/etc/group`` inside: the student and root, nothing else."""
        uid = self.uid if self.uid is not None else os.getuid()
        gid = self.uid if self.uid is not None else os.getgid()
        passwd, group = self.base / "passwd", self.base / "group"
        passwd.write_text(f"root:x:0:0:root:/root:/bin/sh\nstudent:x:{uid}:{gid}::{HOME}:/bin/sh\n")
        group.write_text(f"root:x:0:\nstudent:x:{gid}:\n")
        return str(passwd), str(group)

    def close(self) -> None:
        """End what is left of the kernel, reset its uid's keyrings, remove the scratch."""
        try:
            if self.cgroup is not None:
                self.cgroup.close()
                self.cgroup = None
            if self.uid is not None and self._lock is not None:
                kill_uid(self.uid)
                clear_keyrings(self.uid)
        except CourseError:
            pass  # the next kernel given this uid clears its keyrings first, or refuses to run
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _descendants(pid: int) -> list[int]:
    children = _children_map()
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _namespace_pid(pid: int) -> int | None:
    """The pid of host process ``pid`` inside its innermost pid namespace."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
        return stat[stat.rindex(b")") + 2:].split()[0].decode()
    except (OSError, ValueError):
        return "?"


def kill_strays(bwrap_pid: int, rounds: int = 50, keep: int = 2,
                spare: frozenset[int] = frozenset()) -> tuple[int, int]:
    """Kill every process of the sandbox under ``bwrap_pid`` but pids 1 to ``keep`` of its
    namespace (bwrap's init and the kernel; a warm sandbox keeps only its zygote, pid 1) and
    the host pids in ``spare`` (a warm sandbox's running kernel).

    Returns (processes killed, zombies left: only their parent can reap them).
    """
    killed = _kill_until_gone(
        lambda: [p for p in _descendants(bwrap_pid)
                 if (_namespace_pid(p) or 0) > keep and p not in spare
                 and _state(p) not in ("Z", "X", "?")],
        rounds)
    zombies = [p for p in _descendants(bwrap_pid) if _state(p) == "Z"]
    return killed, len(zombies)


# Run silently in the kernel when it holds dead children (only a parent can reap them, and
# until then they count against the process cap).
REAP_CODE = ("import os as _o\ntry:\n    while _o.waitpid(-1, _o.WNOHANG)[0]:\n        pass\n"
             "except ChildProcessError:\n    pass\ndel _o\n")


class SandboxKernelManager(AsyncKernelManager):
    """A kernel manager that starts its kernel inside a :class:`Sandbox`.

    The connection file and IPC sockets live in the sandbox's runtime folder, bound at the same
    path inside; the kernel's working folder is a scratch copy of the folder nbclient asked for.
    """

    sandbox_mode = Unicode("", help="root, user, or '' to detect").tag(config=True)
    max_processes = Integer(DEFAULT_MAX_PROCESSES, help="process cap, threads count").tag(
        config=True)
    cpu_seconds = Integer(0, help="CPU-time cap of each kernel process; 0 = none").tag(
        config=True)
    scratch_parent = Unicode("", help="folder for the sandbox's scratch (default: temp)").tag(
        config=True)
    memory_mb = Integer(0, help="memory cgroup cap of each kernel in MB, where this machine "
                        "offers one (see memory_cap_description); 0 = none").tag(config=True)
    tmp_mb = Integer(DEFAULT_TMP_MB, help="size cap of each of the kernel's /tmp and /dev/shm "
                     "in MB; 0 = none").tag(config=True)
    home_mb = Integer(DEFAULT_HOME_MB, help="size cap of the kernel's home (its copy of the "
                      "submission included) in MB; 0 = none").tag(config=True)

    warm = Bool(False, help="fork kernels from one preloaded sandbox per folder (the "
                "submission): autograder/zygote.py").tag(config=True)
    preload = List(Unicode(), help="modules a warm sandbox imports before forking kernels").tag(
        config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transport = "ipc"
        self.sandbox: Sandbox | None = None
        self.warm_box = None  # the shared WarmSandbox of a warm kernel; not closed with it

    def _limits(self) -> Limits:
        return Limits(self.max_processes, self.cpu_seconds, memory_mb=self.memory_mb,
                      tmp_mb=self.tmp_mb, home_mb=self.home_mb)

    async def _async_pre_start_kernel(self, **kw: Any):
        mode = self.sandbox_mode or detect().mode
        if mode not in (ROOT_MODE, USER_MODE):
            raise SandboxUnavailable(f"No sandbox available ({detect().detail}).")
        if self.sandbox is not None:  # a restart: a fresh sandbox
            self.sandbox.close()
            self.sandbox = None
        if self.warm:
            try:
                return await self._warm_pre_start(mode, **kw)
            except CourseError as exc:  # e.g. the zygote did not start: a kernel of its own
                self.log.warning("Warm kernel unavailable (%s); starting a fresh sandbox", exc)
                self.warm_box = None
        self.sandbox = Sandbox(mode, self._limits(), self.scratch_parent)
        self.connection_file = str(self.sandbox.run_dir / "kernel.json")
        self.ip = str(self.sandbox.run_dir / "kernel-ipc")
        try:
            cmd, kw = await super()._async_pre_start_kernel(**kw)
            source_env = dict(kw.get("env") or os.environ)
            self.sandbox.prepare(kw.pop("cwd", None), source_env)
            cmd = self.sandbox.command(cmd, source_env)
        except BaseException:
            self.sandbox.close()
            raise
        kw["cwd"] = str(self.sandbox.base)
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return cmd, kw

    async def _warm_pre_start(self, mode: str, **kw: Any):
        """Pre-start of a kernel forked from the folder's warm sandbox (made on first use)."""
        from . import zygote

        folder = kw.get("cwd")
        source_env = dict(kw.get("env") or os.environ)

        def make() -> zygote.WarmSandbox:
            box = Sandbox(mode, self._limits(), self.scratch_parent)
            try:
                box.prepare(folder, source_env)
                return zygote.WarmSandbox(box, source_env, list(self.preload))
            except BaseException:
                box.close()
                raise

        key = (mode, repr(self._limits()), self.scratch_parent, str(folder))
        # In this thread, as a cold kernel's bwrap is: --die-with-parent follows the thread
        # that started it, and this one lives as long as the grading does.
        self.warm_box = zygote.shared(key, make)
        box = self.warm_box.sandbox
        self.connection_file = str(box.run_dir / "kernel.json")
        self.ip = str(box.run_dir / "kernel-ipc")
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        kw.pop("cwd", None)
        box.unseal_run_dir()  # the new kernel makes its sockets there; sealed once it has
        kw["cwd"] = str(box.base)
        kw["env"] = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        return self.warm_box.kernel_command(cmd), kw

    def _box(self) -> Sandbox | None:
        return self.warm_box.sandbox if self.warm_box is not None else self.sandbox

    def _bwrap_pid(self) -> int | None:
        if self.warm_box is not None:
            process = self.warm_box.process
        else:
            process = getattr(self.provisioner, "process", None)
        if process is None or process.poll() is not None:
            return None
        return process.pid

    def kernel_pid(self) -> int | None:
        """The kernel's pid outside the sandbox (pid 2 of its namespace; in a warm sandbox,
        the fork its zygote reported), if it runs."""
        bwrap_pid = self._bwrap_pid()
        if bwrap_pid is None:
            return None
        inside = self.warm_box.kernel_namespace_pid() if self.warm_box is not None else 2
        if inside is None:
            return None
        return next((p for p in _descendants(bwrap_pid) if _namespace_pid(p) == inside
                     and _state(p) not in ("Z", "X", "?")), None)

    def kill_strays(self) -> tuple[int, int]:
        """Kill the sandbox's processes other than the kernel; see :func:`kill_strays`."""
        bwrap_pid = self._bwrap_pid()
        if bwrap_pid is None:
            return (0, 0)
        if self.warm_box is None:
            return kill_strays(bwrap_pid)
        kernel = self.kernel_pid()
        return kill_strays(bwrap_pid, keep=1, spare=frozenset({kernel} if kernel else ()))

    async def _async_signal_kernel(self, signum: int) -> None:
        """Interrupts go to the kernel itself: bwrap does not pass them on, and dies of them."""
        pid = self.kernel_pid() if signum == signal.SIGINT else None
        if pid is None:
            await super()._async_signal_kernel(signum)
            return
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        try:
            await super()._async_launch_kernel(kernel_cmd, **kw)
        except BaseException:
            self._close_sandbox()
            raise

    async def _async_post_start_kernel(self, **kw: Any) -> None:
        await super()._async_post_start_kernel(**kw)
        await self._seal_run_dir()

    async def _seal_run_dir(self, timeout: float = 60.0) -> None:
        """Root mode: once the kernel has made its five sockets, take the runtime folder back.

        The runtime folder is the one folder of the host the kernel can write to, uncapped;
        from then on it can write to none. ipykernel makes its sockets before it runs any code
        but its startup files, and no cell runs before ``start_kernel`` returns.
        """
        box = self._box()
        if box is None or box.uid is None:
            return
        ports = (self.shell_port, self.iopub_port, self.stdin_port, self.control_port,
                 self.hb_port)
        sockets = [Path(f"{self.ip}-{port}") for port in ports]
        deadline = time.monotonic() + timeout
        while not all(s.exists() for s in sockets):
            bwrap_pid = self._bwrap_pid()
            proxy = getattr(self.provisioner, "process", None)
            if bwrap_pid is None or (self.warm_box is not None and proxy is not None
                                     and proxy.poll() is not None):
                return  # it died: waiting for it to be ready fails, nothing to seal
            if time.monotonic() > deadline:  # never left running unsealed
                os.kill(bwrap_pid, signal.SIGKILL)
                raise CourseError(f"The sandboxed kernel made no sockets in {timeout:g} s; it "
                                  "was stopped. Check that the machine is not overloaded and "
                                  "grade again.")
            await asyncio.sleep(0.02)
        box.seal_run_dir()

    async def _async_shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
        try:
            await super()._async_shutdown_kernel(now=now, restart=restart)
        finally:  # also when killing a kernel that already died raises
            self._close_sandbox()

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        self._close_sandbox()

    def _close_sandbox(self) -> None:
        if self.warm_box is not None:  # shared: only what the kernel left goes
            bwrap_pid = self._bwrap_pid()
            if bwrap_pid is not None:
                kill_strays(bwrap_pid, keep=1)
            self.warm_box = None
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None


class SandboxCells:
    """Mixin for nbclient clients: after each cell, end what the cell left running.

    Put it before the nbclient class in the bases; it works with any kernel manager and does
    something only with a :class:`SandboxKernelManager`.
    """

    async def async_execute_cell(self, *args: Any, **kwargs: Any):
        try:
            return await super().async_execute_cell(*args, **kwargs)
        finally:
            km = getattr(self, "km", None)
            if isinstance(km, SandboxKernelManager):
                _, zombies = km.kill_strays()
                if zombies and getattr(self, "kc", None) is not None:
                    # The reply is skipped by nbclient (another msg_id); the kernel runs this
                    # before the next cell.
                    self.kc.execute(REAP_CODE, silent=True, store_history=False)

    # nbclient binds the blocking form to its own coroutine at class creation: rebind it.
    execute_cell = run_sync(async_execute_cell)
