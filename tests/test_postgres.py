"""A PostgreSQL gradebook (``course grade --db postgresql://...``), against a real server.

The test starts Debian's PostgreSQL in a temporary data directory, listening on a Unix socket
only, as an unprivileged user (the server refuses to run as root). A class of the fixture lab
is graded with two workers writing the gradebook at once, written answers are marked the way
the formgrader marks them, and then ``course export``, the ``grades.csv`` the grade table is
written to and nbgrader's own ``nbgrader export`` must agree for every student. CI installs the
server (``.ci/run``); elsewhere the test skips with a one-line reason.
"""

from __future__ import annotations

import csv
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.export import export
from autograder.grade import GradeOptions, collect_scores, grade, write_csv
from autograder.samples import ALL, make_submission

from ._course import FIXTURE_LAB, fixture_course

LAB = FIXTURE_LAB
USER = "course"
DATABASE = "gradebook"


def _server_tool(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, or where Debian's package puts it."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return versions[-1] if versions else None


def _require_postgres() -> tuple[str, str]:
    initdb, pg_ctl = _server_tool("initdb"), _server_tool("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    if os.environ.get("CI"):
        pytest.fail("CI must test the PostgreSQL gradebook, but initdb/pg_ctl are missing "
                    "(apt-get install postgresql)")
    pytest.skip("PostgreSQL server not installed (apt-get install postgresql)")


def _as_server_user() -> list[str]:
    """A command prefix running as an unprivileged user when this process is root."""
    if os.geteuid() != 0:
        return []
    nobody = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
            "--clear-groups", "--"]


@pytest.fixture(scope="module")
def postgres_url():
    """A running server with an empty database; its SQLAlchemy URL (Unix socket only)."""
    initdb, pg_ctl = _require_postgres()
    base = Path(tempfile.mkdtemp(prefix="course-pg-"))  # not under pytest's 0700 folders
    base.chmod(0o755)
    data = base / "data"
    if os.geteuid() == 0:
        os.chown(base, pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    prefix = _as_server_user()
    run = {"check": True, "capture_output": True, "text": True, "cwd": base}
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", USER, "-A", "trust",
                        "--no-sync"], **run)
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-w",
                        "-t", "60", "-o", f"-k {base} -c listen_addresses='' -c fsync=off",
                        "start"], **run)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr or exc.stdout}")
    try:
        import psycopg2

        conn = psycopg2.connect(host=str(base), user=USER, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {DATABASE}")
        conn.close()
        yield f"postgresql+psycopg2://{USER}@/{DATABASE}?host={base}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, cwd=base)
        shutil.rmtree(base, ignore_errors=True)


def _mark(url: str, student: str, points: float) -> None:
    """What the formgrader's "save" does for one written answer."""
    from nbgrader.api import Gradebook

    with Gradebook(url) as gb:
        answer = gb.find_grade("task2_answer", "quiz", LAB, student)
        answer.manual_score = points
        answer.needs_manual_grade = False
        gb.db.commit()


@pytest.mark.slow
def test_a_postgresql_gradebook_through_grading_marking_and_export(postgres_url, tmp_path):
    import psycopg2

    root = fixture_course(tmp_path / "course")
    sub = root / "submitted"
    make_submission(LAB, sub / "solution" / LAB, root=root)
    make_submission(LAB, sub / "blank" / LAB, solve=[], root=root)
    make_submission(LAB, sub / "wrong" / LAB, solve=ALL, root=root, overrides={
        "task2_mean": "def mean(values):\n    return float(values[0])"})
    make_submission(LAB, sub / "partial" / LAB, solve=["task1_add"], root=root)
    options = GradeOptions(jobs=2, cell_timeout=60, notebook_timeout=300,
                           sandbox=sandbox.detect().active)
    results = {r.student: r for r in grade(LAB, root=root, db_url=postgres_url,
                                            options=options)}
    assert {s: r.auto_score for s, r in results.items()} == {
        "blank": 0.0, "partial": 2.0, "solution": 5.0, "wrong": 2.0}
    assert all(r.problem == "" for r in results.values()), results
    assert not (root / "gradebook.db").exists()  # nothing went to a SQLite file

    # The gradebook lives in the server: nbgrader's tables, one submission per student.
    conn = psycopg2.connect(host=postgres_url.rsplit("host=", 1)[1], user=USER, dbname=DATABASE)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM submitted_assignment")
        assert cur.fetchone()[0] == 4
    conn.close()

    # A person marks the solution's written answer; the wrong one's waits (unchanged answers,
    # blank's and partial's, nbgrader scores 0 itself).
    _mark(postgres_url, "solution", 1.0)

    final, path = export(LAB, root, db_url=postgres_url, out=tmp_path / "final.csv")
    final = {g.student: g for g in final}
    assert {s: g.total for s, g in final.items()} == {
        "solution": 6.0, "wrong": 2.0, "partial": 2.0, "blank": 0.0}
    assert final["wrong"].pending and not final["solution"].pending

    # grades.csv, as course grade writes it, read back from the gradebook after marking
    scores = [collect_scores(LAB, s, postgres_url) for s in sorted(results)]
    with write_csv(scores, tmp_path / "grades.csv").open(encoding="utf-8") as fh:
        ours = {row["student"]: float(row["auto_score"]) + float(row["manual_score"])
                for row in csv.DictReader(fh)}

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
           f"{os.environ.get('PATH', '')}"}
    done = subprocess.run(["nbgrader", "export", f"--db={postgres_url}",
                           f"--to={tmp_path / 'nbgrader.csv'}"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with (tmp_path / "nbgrader.csv").open(encoding="utf-8") as fh:
        theirs = {row["student_id"]: float(row["score"]) for row in csv.DictReader(fh)
                  if row["assignment"] == LAB}
    assert theirs == ours == {s: g.total for s, g in final.items()}
