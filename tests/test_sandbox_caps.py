"""Caps that hold (trusted grading, item 10): each test starts real sandboxed kernels.

A kernel started through :class:`autograder.sandbox.SandboxKernelManager` tries to fill memory
through shared mappings and tmpfs files, to fill ``/tmp``, ``/dev/shm`` and its home, and to leave
a key in its uid's keyrings for the next kernel. The caps stop each attempt; the grader (this
process) carries on. In CI a missing sandbox (or, as root, a missing memory cgroup) is a
failure; elsewhere a skip.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import queue
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograder import sandbox

from ._course import require_sandbox

ADD_KEY_SYSCALL = {"x86_64": 248, "aarch64": 217, "riscv64": 217}
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_SEARCH, KEYCTL_UNLINK = 10, 9


def require_memory_cgroup() -> sandbox.CgroupPlace:
    """Where kernels' memory cgroups go; CI as root must have one, elsewhere a skip."""
    require_sandbox()
    place = sandbox.memory_cgroup_place()
    if place is None:
        if os.environ.get("CI") and os.geteuid() == 0:
            pytest.fail("CI runs as root and must test the memory cgroup, but none can be made "
                        "under /sys/fs/cgroup: " + sandbox.memory_cap_description())
        pytest.skip("no writable memory cgroup here (run as root to test it)")
    return place


@dataclass
class Outcome:
    """What one cell did: its printed text, its error's name, whether the kernel died."""

    text: str = ""
    error: str = ""
    died: bool = False


class Kernel:
    """A kernel in a sandbox, driven from a test: :meth:`run` a cell, :meth:`stop` it."""

    def __init__(self, km: sandbox.SandboxKernelManager, kc) -> None:
        self.km, self.kc = km, kc

    @classmethod
    async def start(cls, folder: Path, **caps: int) -> Kernel:
        km = sandbox.SandboxKernelManager(kernel_name="python3", **caps)
        await km.start_kernel(cwd=str(folder), env=dict(os.environ))
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
        except BaseException:
            await cls(km, kc).stop()
            raise
        return cls(km, kc)

    async def run(self, code: str, timeout: float = 30) -> Outcome:
        """Execute ``code``; return when the kernel is idle again, or dead."""
        msg_id, out = self.kc.execute(code), Outcome()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                msg = await self.kc.get_iopub_msg(timeout=0.5)
            except queue.Empty:
                if not await self.km.is_alive():
                    out.died = True
                    return out
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.text += content["text"]
            elif kind == "error":
                out.error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                return out
        pytest.fail(f"the cell ran past {timeout} s: {out}")

    async def stop(self) -> None:
        self.kc.stop_channels()
        await self.km.shutdown_kernel(now=True)


@pytest.fixture
def folder(tmp_path) -> Path:
    """The submission's folder: one small data file."""
    (tmp_path / "data.txt").write_text("mine")
    return tmp_path


# --- memory: the cgroup counts shared mappings and tmpfs files --------------------------------

SMALL_THEN_HOG = {
    "shared mmap": ("import mmap\nm = mmap.mmap(-1, {size})\n"
                    "for i in range(0, {size}, 4096):\n    m[i] = 1\n"),
    "/dev/shm file": "with open('/dev/shm/hog', 'wb') as f:\n"
                     "    for i in range(0, {size}, 1 << 20):\n        f.write(b'x' * (1 << 20))\n",
    "/tmp file": "with open('/tmp/hog', 'wb') as f:\n"
                 "    for i in range(0, {size}, 1 << 20):\n        f.write(b'x' * (1 << 20))\n",
}


@pytest.mark.parametrize("how", sorted(SMALL_THEN_HOG))
def test_shared_memory_hog_is_stopped_by_the_memory_cap(folder, how):
    require_memory_cgroup()

    async def scenario() -> None:
        kernel = await Kernel.start(folder, memory_mb=256, tmp_mb=4096)
        cgroup = kernel.km.sandbox.cgroup
        assert cgroup is not None and cgroup.path is not None
        path = cgroup.path
        try:
            small = await kernel.run(SMALL_THEN_HOG[how].format(size=32 << 20) + "print('ok')")
            assert small.text == "ok\n" and not small.died, small  # under the cap: works
            hog = await kernel.run(SMALL_THEN_HOG[how].format(size=1 << 30) + "print('ate')")
            assert "ate" not in hog.text, hog
            assert hog.died or hog.error, hog  # killed by the cgroup, or the write failed
        finally:
            await kernel.stop()
        assert not path.exists(), "the kernel's cgroup outlived it"

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 20


# --- files: /tmp, /dev/shm and the home are size-capped tmpfs ---------------------------------

FILL = """\
import errno, os
def fill(path):
    written = 0
    try:
        with open(path, 'wb') as f:
            while True:
                f.write(b'x' * (1 << 20))
                f.flush()
                written += 1
    except OSError as exc:
        print(path, errno.errorcode[exc.errno], written)
"""


def _filled(text: str) -> dict[str, tuple[str, int]]:
    """``{path: (errno name, MB written)}`` from the lines FILL printed."""
    return {p: (e, int(n)) for p, e, n in (ln.split() for ln in text.splitlines())}


def test_tmp_and_shm_hogs_fail_with_enospc_at_the_cap(folder):
    require_sandbox()

    async def scenario() -> Outcome:
        kernel = await Kernel.start(folder, tmp_mb=32)
        try:
            return await kernel.run(FILL + "fill('/tmp/hog')\nfill('/dev/shm/hog')\n")
        finally:
            await kernel.stop()

    got = _filled(asyncio.run(scenario()).text)
    assert set(got) == {"/tmp/hog", "/dev/shm/hog"}, got
    for path, (name, megabytes) in got.items():
        assert name == "ENOSPC" and 28 <= megabytes <= 32, (path, name, megabytes)


def test_home_hog_fails_with_enospc_at_the_cap(folder):
    require_sandbox()
    probe = ("import os\nhome = os.path.expanduser('~')\n"
             "print('cwd', os.getcwd(), open('data.txt').read(), "
             "os.stat(home).st_uid == os.getuid(), oct(os.stat(home).st_mode & 0o777))\n")

    async def scenario() -> tuple[Outcome, Outcome, list[str]]:
        kernel = await Kernel.start(folder, home_mb=32)
        try:
            seen = await kernel.run(probe)
            hog = await kernel.run(FILL + "fill(os.path.expanduser('~/work/hog'))\n")
            host = sorted(p.name for p in (kernel.km.sandbox.home / "work").iterdir())
            return seen, hog, host
        finally:
            await kernel.stop()

    seen, hog, host = asyncio.run(scenario())
    assert seen.text.split() == ["cwd", sandbox.WORKDIR, "mine", "True", "0o700"], seen
    (name, megabytes), = _filled(hog.text).values()
    assert name == "ENOSPC" and 28 <= megabytes <= 32, hog
    assert host == ["data.txt"], "the home is a copy: the host's scratch must not grow"


def test_the_runtime_folder_is_sealed_before_the_first_cell(folder):
    if require_sandbox().mode != sandbox.ROOT_MODE:
        pytest.skip("in user mode the kernel runs as the grader's user and owns its folders")
    probe = ("import os\nfor path, how in (({run!r} + '/new', 'w'), ({run!r} + '/kernel.json', "
             "'a')):\n    try:\n        open(path, how).close()\n        print('wrote', path)\n"
             "    except OSError as exc:\n        print('blocked', type(exc).__name__)\n")

    async def scenario() -> Outcome:
        kernel = await Kernel.start(folder)
        try:
            return await kernel.run(probe.format(run=str(kernel.km.sandbox.run_dir)))
        finally:
            await kernel.stop()

    assert asyncio.run(scenario()).text.split() == ["blocked", "PermissionError"] * 2


def test_prepare_refuses_a_folder_larger_than_the_home(folder):
    (folder / "big.bin").write_bytes(b"\0" * (2 << 20))
    box = sandbox.Sandbox(sandbox.USER_MODE, sandbox.Limits(home_mb=1))
    try:
        with pytest.raises(sandbox.CourseError, match="home_mb"):
            box.prepare(str(folder), {})
    finally:
        box.close()


# --- keyrings: per uid, not per namespace ----------------------------------------------------

KEYRINGS = """\
import ctypes, errno, os
call = ctypes.CDLL(None, use_errno=True).syscall
call.restype = ctypes.c_long
ADD_KEY, KEYCTL = {add_key}, {add_key} + 2
def syscall(number, *args):
    args = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    done = call(ctypes.c_long(number), *args)
    return done if done >= 0 else errno.errorcode[ctypes.get_errno()]
rings = {{'user': -4, 'user-session': -5, 'session': -3}}
persistent = syscall(KEYCTL, 22, -1, -3)  # KEYCTL_GET_PERSISTENT, linked in the session ring
if persistent != 'EOPNOTSUPP':
    rings['persistent'] = persistent
libc = ctypes.CDLL(None, use_errno=True)
def ipc(function, *args):
    done = function(*args)
    return done if done >= 0 else errno.errorcode[ctypes.get_errno()]
"""
ADD = KEYRINGS + """\
for name, ring in rings.items():
    print(name, syscall(ADD_KEY, b'user', b'{desc}', b'secret', 6, ring))
print('sysv-shm', ipc(libc.shmget, 0xC0DE, 4096, 0o1600))  # IPC_CREAT
print('posix-mq', ipc(libc.mq_open, b'/{desc}', os.O_CREAT | os.O_RDWR, 0o600, None))
"""
FIND = KEYRINGS + """\
for name, ring in rings.items():
    print(name, syscall(KEYCTL, 10, ring, b'user', b'{desc}', 0))  # KEYCTL_SEARCH
print('sysv-shm', ipc(libc.shmget, 0xC0DE, 0, 0))
print('posix-mq', ipc(libc.mq_open, b'/{desc}', os.O_RDWR))
"""
IPC_GONE = {"sysv-shm": "ENOENT", "posix-mq": "ENOENT"}  # per IPC namespace, unshared


def _keyctl_code(template: str, desc: str) -> str:
    number = ADD_KEY_SYSCALL.get(os.uname().machine)
    if number is None:
        pytest.skip(f"no add_key syscall number for {os.uname().machine} in this test")
    return template.format(add_key=number, desc=desc)


def test_keys_and_ipc_objects_do_not_carry_to_the_next_kernel_of_the_uid(folder, monkeypatch):
    protection = require_sandbox()
    if protection.mode == sandbox.ROOT_MODE:  # one uid for both kernels, as a reused uid
        uid = sandbox._free_uid_candidates()[-1]
        monkeypatch.setattr(sandbox, "_free_uid_candidates", lambda: [uid])
    desc = f"course-probe-{uuid.uuid4().hex[:8]}"

    async def one(code: str) -> tuple[Outcome, int | None]:
        kernel = await Kernel.start(folder)
        try:
            return await kernel.run(code), kernel.km.sandbox.uid
        finally:
            await kernel.stop()

    added, first = asyncio.run(one(_keyctl_code(ADD, desc)))
    found, second = asyncio.run(one(_keyctl_code(FIND, desc)))
    assert first == second
    ids = dict(line.split() for line in added.text.splitlines())
    assert all(key.isdigit() for key in ids.values()), added  # each add worked
    keys = set(ids) - set(IPC_GONE)
    assert dict(line.split() for line in found.text.splitlines()) == {
        **dict.fromkeys(keys, "ENOKEY"), **IPC_GONE}, found


def test_the_kernel_does_not_possess_the_graders_session_keyring(folder):
    require_sandbox()
    number = ADD_KEY_SYSCALL.get(os.uname().machine)
    if number is None:
        pytest.skip(f"no add_key syscall number for {os.uname().machine} in this test")
    call = ctypes.CDLL(None, use_errno=True).syscall
    call.restype = ctypes.c_long
    desc = f"course-grader-{uuid.uuid4().hex[:8]}"
    key = call(ctypes.c_long(number), b"user", desc.encode(), b"hunter2", ctypes.c_long(7),
               ctypes.c_long(KEY_SPEC_SESSION_KEYRING))
    if key < 0:
        pytest.skip(f"the grader cannot add a key here: {errno.errorcode[ctypes.get_errno()]}")

    async def scenario() -> Outcome:
        kernel = await Kernel.start(folder)
        try:
            return await kernel.run(_keyctl_code(FIND, desc))
        finally:
            await kernel.stop()

    try:
        found = asyncio.run(scenario())
    finally:
        call(ctypes.c_long(number + 2), ctypes.c_long(KEYCTL_UNLINK), ctypes.c_long(key),
             ctypes.c_long(KEY_SPEC_SESSION_KEYRING))
    assert dict(line.split() for line in found.text.splitlines())["session"] == "ENOKEY", found


# --- units: no kernel ----------------------------------------------------------------------


def _command(limits: sandbox.Limits) -> list[str]:
    return sandbox.bwrap_command(sandbox.ROOT_MODE, ["python", "-m", "ipykernel_launcher"],
                                 uid=47001, home="/s/home", run_dir="/s/run", env={},
                                 limits=limits, python="/py")


def _mounts(cmd: list[str]) -> dict[str, list[str]]:
    """Each tmpfs's destination: the arguments before it back to the last mount."""
    out, pending = {}, []
    for i, arg in enumerate(cmd):
        if arg in ("--size", "--perms"):
            pending += cmd[i:i + 2]
        elif arg == "--tmpfs":
            out[cmd[i + 1]], pending = pending, []
    return out


def test_command_caps_tmp_shm_and_home():
    cmd = _command(sandbox.Limits(tmp_mb=64, home_mb=128))
    mounts = _mounts(cmd)
    assert mounts["/tmp"] == mounts["/dev/shm"] == ["--size", str(64 << 20), "--perms", "1777"]
    assert mounts[sandbox.HOME] == ["--size", str(128 << 20), "--perms", "0700"]
    assert ("--remount-ro", "/dev") in zip(cmd, cmd[1:], strict=False)
    binds = [(cmd[i + 1], cmd[i + 2]) for i, a in enumerate(cmd) if a == "--bind"]
    assert binds == [("/s/run", "/s/run")]  # the home is a copy: no host folder for it
    assert ("/s/home", sandbox.HOME_SOURCE) in zip(cmd[1:], cmd[2:], strict=False)
    filler = cmd.index(sandbox.FILL_HOME_CODE)
    assert cmd[filler - 4:filler] == ["/py", "-I", "-S", "-c"]
    assert cmd[filler + 1:filler + 5] == [sandbox.HOME_SOURCE, sandbox.HOME, sandbox.WORKDIR,
                                          "47001"]  # given to the uid, then setpriv drops it
    assert cmd[filler + 5] == "setpriv" and cmd[-3:] == ["python", "-m", "ipykernel_launcher"]


def test_command_without_caps_binds_the_home():
    cmd = _command(sandbox.Limits())
    assert "--size" not in cmd and sandbox.FILL_HOME_CODE not in cmd
    assert ("/s/home", sandbox.HOME) in zip(cmd[1:], cmd[2:], strict=False)


def test_memory_cap_description_says_what_counts():
    text = sandbox.memory_cap_description()
    if sandbox.memory_cgroup_place() is None:
        assert "RLIMIT_DATA" in text and "shared memory" in text
    else:
        assert "cgroup v" in text and "shared memory" in text


def _fake_hierarchy(monkeypatch, tmp_path, mounts, own) -> Path:
    """A cgroup tree of plain folders under ``tmp_path``: ``mounts`` of (type, root, point)."""
    for _, _, point in mounts:
        (tmp_path / point).mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(sandbox, "_cgroup_mounts", lambda: [
        (kind, root, str(tmp_path / point), {"rw", "memory"} if kind == "cgroup" else {"rw"})
        for kind, root, point in mounts])
    monkeypatch.setattr(sandbox, "_own_cgroups", lambda: own)
    return tmp_path


def test_cgroup_places_prefer_v1_memory_then_v2_own_then_v2_root(monkeypatch, tmp_path):
    top = _fake_hierarchy(monkeypatch, tmp_path, [("cgroup", "/", "memory"),
                                                  ("cgroup2", "/", "unified")],
                          {"memory": "/job/7", "": "/job/7"})
    for folder in ("memory/job/7", "unified/job/7"):
        (top / folder).mkdir(parents=True)
    assert sandbox._cgroup_candidates() == [
        sandbox.CgroupPlace(1, top / "memory/job/7"), sandbox.CgroupPlace(2, top / "unified/job/7"),
        sandbox.CgroupPlace(2, top / "unified")]


def test_cgroup_folder_follows_a_mount_of_a_subtree(tmp_path):
    (tmp_path / "x").mkdir()
    assert sandbox._cgroup_folder(str(tmp_path), "/docker/abc", "/docker/abc/x") == tmp_path / "x"
    assert sandbox._cgroup_folder(str(tmp_path), "/docker/abc", "/elsewhere") is None


def test_v2_needs_the_memory_controller_delegated(tmp_path):
    place = sandbox.CgroupPlace(2, tmp_path)
    (tmp_path / "cgroup.controllers").write_text("cpu pids\n")
    assert not sandbox._memory_delegated(place)
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("memory\n")
    assert sandbox._memory_delegated(place)


@pytest.mark.parametrize(("version", "limit_file"), [(1, "memory.limit_in_bytes"),
                                                     (2, "memory.max")])
def test_kernel_cgroup_sets_its_limit(tmp_path, version, limit_file):
    group = sandbox.KernelCgroup(sandbox.CgroupPlace(version, tmp_path), 300)
    assert group.path is not None and group.path.parent == tmp_path
    assert group.path.name.startswith(f"{sandbox.CGROUP_PREFIX}{os.getpid()}-")
    assert (group.path / limit_file).read_text() == str(300 << 20)
    assert group.procs == group.path / "cgroup.procs" and group.pids() == []
    group.close()  # a plain folder holding a file: left, but closing does not raise
    assert group.path is None
