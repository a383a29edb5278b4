"""Sandboxed grading (issue 5): submitted code cannot read the tests, touch grades or the network.

The attack submissions of ``tests/fixtures/attacks`` (one file each, appended to a correct Task 1
answer of the fixture lab) are graded in one batch, two at a time, beside honest students. For
each: the attempt fails (the notebook prints what it managed, and nothing is found), the rest of
its notebook is graded normally (full marks), and every other student gets exactly the grade
they get when graded alone. Then units: the bwrap command line, detection and refusal.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from autograder import notebooks, sandbox
from autograder.build import build
from autograder.grade import GradeOptions, default_db_url, grade
from autograder.samples import ALL, make_submission

from ._course import require_sandbox

FIXTURES = Path(__file__).parent / "fixtures"
ATTACKS = FIXTURES / "attacks"
LAB = "minilab"
NB = "quiz.ipynb"
ADD = "def add(a, b):\n    return a + b"
SECRET = "COURSE_TEST_SECRET_" + uuid.uuid4().hex[:8].upper()
HONEST = {"solution": (2.0, 3.0), "partial": (2.0, 0.0), "blank": (0.0, 0.0)}


class Listener:
    """A TCP port on loopback that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


def _attack(name: str, root: Path, port: int, mark: str) -> str:
    code = (ATTACKS / f"{name}.py").read_text(encoding="utf-8")
    for key, value in {"{ROOT}": str(root), "{PORT}": str(port), "{PID}": str(os.getpid()),
                       "{SECRET}": SECRET, "{MARK}": mark}.items():
        code = code.replace(key, value)
    return f"{ADD}\n\n{code}"


def _scores(results) -> dict[str, tuple[float, float]]:
    return {r.student: (r.tasks[1][0], r.tasks[2][0]) for r in results}


def _outputs(root: Path, student: str) -> str:
    """Every text output of the student's autograded notebook."""
    nb = notebooks.read(root / "autograded" / student / LAB / NB)
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(str(out.get("text", "")))
            if out.get("output_type") == "error":
                texts.append(f"{out.get('ename')}: {out.get('evalue')}")
    return "\n".join(texts)


ATTACK_NAMES = sorted(p.stem for p in ATTACKS.glob("*.py"))
OPTIONS = GradeOptions(jobs=2, cell_timeout=60, notebook_timeout=300, memory_mb=2048)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    protection = require_sandbox()
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(FIXTURES / "course" / "source", root / "source")
    build(LAB, root=root)
    sub = root / "submitted"
    make_submission(LAB, sub / "solution" / LAB, root=root)
    make_submission(LAB, sub / "partial" / LAB, solve=["task1_add"], root=root)
    make_submission(LAB, sub / "blank" / LAB, solve=[], root=root)
    alone = _scores(grade(LAB, root=root, options=OPTIONS))  # the honest class, no attackers
    assert alone == HONEST

    listener = Listener()
    mark = f"course-attack-{uuid.uuid4().hex[:8]}"
    for name in ATTACK_NAMES:
        make_submission(LAB, sub / name / LAB, solve=ALL, root=root,
                        overrides={"task1_add": _attack(name, root, listener.port, mark)})
    os.environ[SECRET] = "hunter2"  # in the grader's environment, inherited by its workers
    try:
        start = time.monotonic()
        results = {r.student: r for r in grade(LAB, root=root, options=OPTIONS)}
        elapsed = time.monotonic() - start
    finally:
        os.environ.pop(SECRET, None)
        listener.close()
    return root, protection, results, listener, mark, elapsed


def test_attack_fixtures_are_all_here():
    assert ATTACK_NAMES == sorted(["fork_bomb", "network", "proc_secrets", "read_other_student",
                                   "update_gradebook", "walk_up", "write_outside"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ATTACK_NAMES)
def test_attack_fails_and_the_rest_is_graded(batch, name):
    root, _, results, _, _, _ = batch
    text = _outputs(root, name)
    assert "ATTACK OK" not in text, text
    assert "blocked" in text or name in ("fork_bomb", "proc_secrets"), text
    if name == "fork_bomb" and "kernel died" in results[name].problem:
        # The memory cgroup killed the kernel before the process cap stopped the forks: the
        # cell that started it (Task 1's) fails, the kernel is restarted, the rest is graded.
        assert _scores([results[name]])[name] == (0.0, 3.0), results[name].problem
    else:
        assert _scores([results[name]])[name] == (2.0, 3.0), results[name].problem


@pytest.mark.slow
def test_other_students_grades_are_unchanged(batch):
    root, _, results, _, _, _ = batch
    assert {s: _scores([results[s]])[s] for s in HONEST} == HONEST
    with Gradebook(default_db_url(root)) as gb:
        manual = [g.manual_score for s in results for nb in gb.find_submission(LAB, s).notebooks
                  for g in nb.grades]
    assert 1000 not in manual


@pytest.mark.slow
def test_kernel_runs_unprivileged_in_its_scratch_folder(batch):
    root, protection, _, _, _, _ = batch
    text = _outputs(root, "walk_up")
    line = next(ln for ln in text.splitlines() if ln.startswith("identity:"))
    uid = int(line.split()[1])
    assert f"cwd: {sandbox.WORKDIR}" in line
    if protection.mode == sandbox.ROOT_MODE:
        assert sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_COUNT
    else:
        assert uid == os.getuid() != 0
    assert "walk done" in text  # the search of every readable folder finished, finding nothing


@pytest.mark.slow
def test_no_file_written_outside_the_scratch_folder(batch):
    root, _, _, _, mark, _ = batch
    text = _outputs(root, "write_outside")
    for path in (f"../../../{mark}", f"{root}/{mark}", f"/{mark}"):
        assert f"blocked: {path} " in text, text
    assert f"blocked: {sandbox.HOME}/../{mark}" in text, text
    places = [root, root.parent, root.parent.parent, Path("/"), Path("/tmp"),
              Path(os.path.expanduser("~")), *root.rglob("*")]
    assert not [p for p in places if p.is_dir() and (p / mark).exists()]


@pytest.mark.slow
def test_network_fails_fast_and_reaches_nothing(batch):
    root, _, _, listener, _, _ = batch
    text = _outputs(root, "network")
    lines = [ln for ln in text.splitlines() if ln.startswith("blocked:")]
    assert len(lines) == 3, text
    assert all(float(ln.split(" after ")[1].split()[0]) < 2.0 for ln in lines), text
    assert listener.accepted == 0


@pytest.mark.slow
def test_proc_shows_neither_the_grader_nor_its_secrets(batch):
    root, _, _, _, _, _ = batch
    text = _outputs(root, "proc_secrets")
    assert "grader visible: False" in text
    seen = int(text.split("processes seen:")[1].split()[0])
    assert seen < 10, text  # the sandbox's own init, kernel, and the kernel's helpers


@pytest.mark.slow
def test_fork_bomb_ends_as_a_failed_cell(batch):
    """Whichever cap stops it first: the process cap (the fork fails with BlockingIOError) or,
    where the kernel has a memory cgroup, the memory cap (the kernel is killed, restarted)."""
    root, _, results, _, _, _ = batch
    text, problem = _outputs(root, "fork_bomb"), results["fork_bomb"].problem
    assert ("BlockingIOError" in text and "process cap" in problem) or (
        "kernel died" in problem and sandbox.memory_cgroup_place() is not None), problem
    assert _scores([results["fork_bomb"]])["fork_bomb"][1] == 3.0  # the rest is graded


@pytest.mark.slow
def test_course_check_runs_in_the_sandbox(tmp_path, capsys):
    require_sandbox()
    from autograder.cli import main

    root = tmp_path / "course"
    shutil.copytree(FIXTURES / "course" / "source", root / "source")
    build(LAB, root=root)
    folder = make_submission(LAB, tmp_path / "mine", root=root, overrides={
        "task1_add": _attack("write_outside", tmp_path, 1, "x") + "\n" + _attack(
            "proc_secrets", tmp_path, 1, "x")})
    assert main(["check", str(folder / NB)]) == 0
    captured = capsys.readouterr()
    assert "Sandbox:" in captured.err
    assert "Visible tests: 5/5 points" in captured.out
    assert not (tmp_path / "x").exists() and not (folder / "x").exists()


# --- units: no kernel ----------------------------------------------------------------------


def _command(mode=sandbox.ROOT_MODE, **kw):
    return sandbox.bwrap_command(mode, ["python", "-m", "ipykernel_launcher", "-f", "/r/k.json"],
                                 uid=47001, home="/s/home", run_dir="/s/run",
                                 env={"HOME": sandbox.HOME, "PATH": "/usr/bin"},
                                 limits=sandbox.Limits(256, 3600, 1024), **kw)


def _pairs(cmd: list[str], flag: str) -> list[tuple[str, str]]:
    return [(cmd[i + 1], cmd[i + 2]) for i, a in enumerate(cmd) if a == flag]


def test_root_command_drops_to_its_uid_without_network_or_environment():
    cmd = _command(extra_ro=["/opt/venv", "/opt/venv/lib", "/data/torch"])
    sep = cmd.index("--")
    for flag in ("--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
                 "--clearenv"):
        assert flag in cmd[:sep]
    assert "--unshare-user" not in cmd and "--new-session" not in cmd  # interrupts reach it
    assert cmd[sep + 1:sep + 6] == ["prlimit", "--nproc=256", "--cpu=3600", "--fsize=1024", "--"]
    assert cmd[sep + 6] == "setpriv" and "--reuid=47001" in cmd and "--no-new-privs" in cmd
    assert cmd[-5:] == ["python", "-m", "ipykernel_launcher", "-f", "/r/k.json"]
    assert ("/s/home", sandbox.HOME) in _pairs(cmd, "--bind")
    assert ("/s/run", "/s/run") in _pairs(cmd, "--bind")
    assert len(_pairs(cmd, "--bind")) == 2  # nothing else is writable
    ro = dict(_pairs(cmd, "--ro-bind"))
    assert "/opt/venv" in ro and "/opt/venv/lib" not in ro and "/data/torch" in ro
    assert cmd[cmd.index("--chdir") + 1] == sandbox.WORKDIR
    assert dict(_pairs(cmd, "--setenv")) == {"HOME": sandbox.HOME, "PATH": "/usr/bin"}
    assert "/etc" not in ro  # only the files of sandbox.ETC_FILES


def test_private_tmp_does_not_hide_an_environment_under_tmp():
    cmd = _command(extra_ro=["/tmp/ci/.venv"])  # a CI checkout under /tmp
    tmpfs = [i for i, a in enumerate(cmd) if a == "--tmpfs" and cmd[i + 1] == "/tmp"]
    venv = [i for i, a in enumerate(cmd) if a == "--ro-bind" and cmd[i + 1] == "/tmp/ci/.venv"]
    assert tmpfs and venv and tmpfs[0] < venv[0]
    assert ("--dir", "/tmp") not in list(zip(cmd, cmd[1:], strict=False))


def test_user_command_uses_a_user_namespace_and_keeps_the_uid():
    cmd = _command(sandbox.USER_MODE)
    assert "--unshare-user" in cmd and "setpriv" not in cmd and "--cap-add" not in cmd


def test_root_mode_needs_a_uid():
    with pytest.raises(ValueError, match="uid"):
        sandbox.bwrap_command(sandbox.ROOT_MODE, ["python"], uid=None, home="/h", run_dir="/r",
                              env={}, limits=sandbox.Limits())


def test_kernel_env_passes_no_secret():
    env = sandbox.kernel_env({"OMP_NUM_THREADS": "1", "AWS_SECRET": "x", "COURSE_SEED": "3",
                              "JPY_PARENT_PID": "4242"}, "/t")
    assert env["OMP_NUM_THREADS"] == "1" and env["COURSE_SEED"] == "3"
    assert env["TORCH_HOME"] == "/t" and env["HOME"] == sandbox.HOME
    assert "AWS_SECRET" not in env and env["JPY_PARENT_PID"] == "1"  # bwrap's init inside


def test_uids_are_never_shared(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox.tempfile, "gettempdir", lambda: str(tmp_path))
    first, fd1 = sandbox.allocate_uid()
    second, fd2 = sandbox.allocate_uid()
    assert first != second
    os.close(fd1)
    third, fd3 = sandbox.allocate_uid()
    assert third == first
    os.close(fd2)
    os.close(fd3)


def test_detection_without_bwrap_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    sandbox.detect.cache_clear()
    try:
        found = sandbox.detect()
        assert not found.active and "apt-get install bubblewrap" in found.detail
        with pytest.raises(sandbox.SandboxUnavailable, match="--no-sandbox"):
            sandbox.require(True)
        assert sandbox.require(False).mode == sandbox.NO_SANDBOX
    finally:
        sandbox.detect.cache_clear()


def test_detection_finds_the_ci_sandbox():
    found = sandbox.detect()
    if os.environ.get("CI"):
        assert found.active, found.detail
    if found.active:
        mode = sandbox.ROOT_MODE if os.geteuid() == 0 else sandbox.USER_MODE
        assert found.mode == mode and "bubblewrap" in found.describe()


def _cli(root: Path, *args: str, no_bwrap: bool) -> subprocess.CompletedProcess:
    """``course grade`` in a subprocess, with bwrap hidden from it when ``no_bwrap``."""
    env = dict(os.environ)
    if no_bwrap:  # a PATH holding only this Python's bin/ and a folder of the tools but bwrap
        tools = root / "tools"
        tools.mkdir(exist_ok=True)
        for tool in ("prlimit", "setpriv", "dot"):
            if shutil.which(tool) and not (tools / tool).exists():
                (tools / tool).symlink_to(shutil.which(tool))
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), str(tools)])
    return subprocess.run([sys.executable, "-m", "autograder.cli", "--course", str(root),
                           "grade", LAB, *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow
def test_grade_without_a_sandbox_refuses_unless_told(tmp_path):
    root = tmp_path / "course"
    shutil.copytree(FIXTURES / "course" / "source", root / "source")
    build(LAB, root=root)
    make_submission(LAB, root / "submitted" / "solution" / LAB, root=root)
    refused = _cli(root, no_bwrap=True)
    assert refused.returncode == 2
    assert "apt-get install bubblewrap" in refused.stderr and "--no-sandbox" in refused.stderr
    assert not (root / "gradebook.db").exists(), "nothing may run before the refusal"
    done = _cli(root, "--no-sandbox", no_bwrap=True)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()
    assert summary[-1].startswith("WARNING: NO SANDBOX") and "--no-sandbox" in summary[-1]
    assert "5/5" in done.stdout


@pytest.fixture
def short_tmp():
    """A temporary folder with a short path: pytest's tmp_path can pass MAX_PARENT_CHARS
    (its name grows with the test name and the run counter), and then the sandbox, rightly,
    puts its scratch elsewhere."""
    folder = Path(tempfile.mkdtemp(prefix="sbx-"))
    assert len(str(folder)) <= sandbox.MAX_PARENT_CHARS - 10
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_scratch_goes_where_the_grader_removes_it(short_tmp):
    tmp_path = short_tmp
    box = sandbox.Sandbox(sandbox.USER_MODE, sandbox.Limits(), str(tmp_path))
    assert box.base.parent == tmp_path
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "quiz.ipynb").write_text("{}")  # notebooks never enter the scratch
    (tmp_path / "folder" / "data.txt").write_text("mine")
    box.prepare(str(tmp_path / "folder"), {})
    assert sorted(p.name for p in (box.home / "work").iterdir()) == ["data.txt"]
    box.close()
    assert not box.base.exists()
    long = tmp_path / ("x" * sandbox.MAX_PARENT_CHARS)
    box = sandbox.Sandbox(sandbox.USER_MODE, sandbox.Limits(), str(long))
    assert box.base.parent != long  # an IPC socket path must stay short
    box.close()


def test_scratch_never_copies_itself(short_tmp):
    tmp_path = short_tmp
    (tmp_path / "data.txt").write_text("mine")
    box = sandbox.Sandbox(sandbox.USER_MODE, sandbox.Limits(), str(tmp_path))
    assert box.base.parent == tmp_path  # the case under test: the scratch is inside the folder
    try:
        box.prepare(str(tmp_path), {})  # the kernel's folder holds the sandbox's own folder
        assert sorted(p.name for p in (box.home / "work").iterdir()) == ["data.txt"]
    finally:
        box.close()
