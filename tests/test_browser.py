"""The course's two JupyterLab sessions, as `make lab` and `make formgrader` start them, in a real
browser (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium).

Each session is started here on 127.0.0.1, on a free port, with a token, from the repository's
``jupyter/student`` or ``jupyter/instructor`` settings, in a throwaway copy of the fixture course:

- the student's (root ``release/``): a release notebook runs all its cells in the page; there is
  no nbgrader formgrader (menu, panel, commands or server pages), but a working Validate button;
  ``source/`` and ``solutions/`` are not in the file browser; the terminal has the environment's
  ``bin/`` on PATH (``course check`` works); no gradebook appears;
- the instructor's (root: the course): the Nbgrader menu and the formgrader page, which lists the
  assignment; and the marking round trip as the instructor does it in the formgrader, on two
  submissions graded beforehand by ``course grade`` (sandboxed): Manual Grading shows the
  marking scheme after the written answer and no hidden test; a score and a comment typed into
  the page reach the gradebook; Generate Feedback writes feedback with the comment, without
  hidden tests or marking scheme; Autograde refuses (``course grade <lab>``) and leaves the
  graded copy as it was.

Every step saves a screenshot (PNG) under pytest's temporary folder (``screenshots``). The
browser tests skip, with a one-line reason, when Chromium, its driver or Selenium is missing,
except in CI (``CI=true``), where ``.ci/run`` installs them. The server-side checks need no
browser and always run. The marking round trip also needs ``course grade``'s sandbox (bubblewrap)
and skips without it, except in CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from autograder import sandbox
from autograder._paths import REPO_ROOT, tool_env
from autograder.grade import default_db_url
from autograder.samples import ALL, make_submission
from tests._course import FIXTURE_LAB, fixture_course, require_sandbox

pytestmark = pytest.mark.slow

SESSION_CONFIG = {"student": REPO_ROOT / "jupyter" / "student",
                  "instructor": REPO_ROOT / "jupyter" / "instructor"}
ENV_BIN = Path(sys.executable).parent  # the environment JupyterLab runs from
START_TIMEOUT = 240  # s: JupyterLab starting on a loaded 2-core machine
PAGE_TIMEOUT = 180  # s: the page loading, a kernel starting, cells running
FORMGRADER_PLUGINS = ("@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment")
FORMGRADER_COMMANDS = ("nbgrader:open-formgrader", "nbgrader:open-formgrader-local",
                       "nbgrader:open-create-assignment", "nbgrader:open-course-list")


# --- a JupyterLab session ----------------------------------------------------------------------


@dataclass
class Lab:
    base: str  # http://127.0.0.1:PORT
    token: str
    log: Path

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={self.token}"

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url(path))
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read()

    def post(self, path: str) -> bytes:
        request = urllib.request.Request(self.url(path), data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read()

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _session_env(home: Path, role: str) -> dict[str, str]:
    """The test's environment, with the session's settings only: nothing from the user's Jupyter
    folders, and the environment's bin/ *off* PATH, so that the session must put it back."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY"))}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", os.defpath).split(os.pathsep)
        if p and Path(p).resolve() != ENV_BIN.resolve())
    for name in ("config", "data", "runtime", "workspaces", "settings", "ipython"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_PATH=str(SESSION_CONFIG[role]),
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        IPYTHONDIR=str(home / "ipython"),
    )
    return env


@contextlib.contextmanager
def jupyterlab(role: str, course: Path, root_dir: Path, home: Path) -> Iterator[Lab]:
    """JupyterLab as ``make lab`` (role student) or ``make formgrader`` (instructor) starts it:
    run from the course root, the session's config folder on JUPYTER_CONFIG_PATH; not as root
    with ``--allow-root`` (the config must allow it)."""
    port, token = _free_port(), secrets.token_hex(16)
    lab = Lab(f"http://127.0.0.1:{port}", token, home / "jupyterlab.log")
    command = [
        str(ENV_BIN / "jupyter"), "lab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True",  # lets the test read the app's command list
    ]
    with open(lab.log, "wb") as log:
        process = subprocess.Popen(command, cwd=course, env=_session_env(home, role),
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab ({role}) exited with {process.returncode}:\n"
                            f"{lab.log_tail()}")
            with contextlib.suppress(OSError):
                if lab.get("/api/status")[0] == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab ({role}) not up after {START_TIMEOUT} s:\n"
                            f"{lab.log_tail()}")
            time.sleep(0.5)
        yield lab
    finally:
        with contextlib.suppress(OSError):
            lab.post("/api/shutdown")  # stops the kernels it started, then the server
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory) -> Iterator[tuple[Lab, Path]]:
    course = fixture_course(tmp_path_factory.mktemp("student-course"))
    shutil.copyfile(REPO_ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    with jupyterlab("student", course, course / "release",
                    tmp_path_factory.mktemp("student-home")) as lab:
        yield lab, course


MARKED, BLANK = "solution", "blank"  # the instructor's course: two submissions, graded


@pytest.fixture(scope="module")
def instructor_course(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess | None]:
    """The fixture course with a solved and a blank submission, graded by ``course grade`` in
    the course folder, sandboxed, as an instructor does before opening the formgrader; not
    graded (None) on a machine without the sandbox."""
    course = fixture_course(tmp_path_factory.mktemp("instructor-course"))
    shutil.copyfile(REPO_ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    for student, solve in ((MARKED, ALL), (BLANK, [])):
        make_submission(FIXTURE_LAB, course / "submitted" / student / FIXTURE_LAB, solve=solve,
                        root=course)
    if not sandbox.detect().active:
        return course, None
    graded = subprocess.run([str(ENV_BIN / "course"), "grade", FIXTURE_LAB, "--jobs", "2"],
                            cwd=course, env=tool_env(), capture_output=True, text=True,
                            timeout=600)
    return course, graded


@pytest.fixture(scope="module")
def instructor_lab(instructor_course, tmp_path_factory) -> Iterator[tuple[Lab, Path]]:
    course, _ = instructor_course
    with jupyterlab("instructor", course, course,
                    tmp_path_factory.mktemp("instructor-home")) as lab:
        yield lab, course


# --- the browser -------------------------------------------------------------------------------


def _browser_paths() -> tuple[str, str]:
    """Chromium and chromedriver; in CI their absence (or Selenium's) is a failure."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                   "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, found in (("chromium", browser), ("chromium-driver", driver))
               if not found]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -c constraints.txt -e '.[dev]')")
    if missing:
        reason = f"no browser to test JupyterLab with: {', '.join(missing)} not installed"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but {reason}")
        pytest.skip(f"{reason} (apt-get install chromium chromium-driver)")
    return browser, driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser_path, driver_path = _browser_paths()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,900",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Callable[[object, str], Path]:
    folder = tmp_path_factory.mktemp("screenshots")

    def save(driver, name: str) -> Path:
        path = folder / f"{name}.png"
        driver.save_screenshot(str(path))
        return path
    return save


def _until(driver, script: str, what: str, screenshots, timeout: float = PAGE_TIMEOUT):
    """Poll a JavaScript expression until it is truthy; its value. On timeout, a screenshot."""
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value:
            return value
        if time.monotonic() > deadline:
            shot = screenshots(driver, "timeout-" + "".join(c if c.isalnum() else "-"
                                                            for c in what)[:60])
            pytest.fail(f"the page never showed {what} within {timeout:.0f} s (see {shot})")
        time.sleep(0.5)


def _click(driver, css: str, text: str, screenshots) -> None:
    """Click, as a user does (mouse down, up), the element matching ``css`` with text ``text``."""
    element = _until(driver, f"[...document.querySelectorAll({css!r})]"
                             f".find(e => e.textContent.trim() === {text!r})",
                     f"'{text}'", screenshots)
    element.click()


def _dialog(driver, what: str, screenshots) -> str:
    """The text of the formgrader's dialog (a Bootstrap modal) once it has faded in."""
    return _until(driver, "(m => m && m.classList.contains('in') && getComputedStyle(m).opacity"
                          " === '1' && m.innerText)(document.querySelector('.modal'))",
                  what, screenshots)


def _close_dialog(driver, screenshots) -> None:
    _click(driver, ".modal .modal-footer button", "OK", screenshots)
    _until(driver, "document.querySelector('.modal') === null", "the dialog closed", screenshots)


def _row_link(driver, student: str, column: str, screenshots):
    """The link in ``student``'s row of the formgrader's table, in the column headed ``column``."""
    return _until(driver, f"""(() => {{
        const table = document.querySelector('#main-table')?.closest('table');
        if (!table) return null;
        const col = [...table.querySelectorAll('thead th')]
            .findIndex(th => th.textContent.trim() === {column!r});
        const row = [...table.querySelectorAll('tbody tr')]
            .find(tr => [...tr.cells].some(td => td.textContent.trim() === {student!r}));
        return col >= 0 && row ? row.cells[col]?.querySelector('a') : null;
    }})()""", f"{student}'s {column} link", screenshots)


MENU_LABELS = "[...document.querySelectorAll('.lm-MenuBar-itemLabel')].map(e => e.textContent)"
LISTING = ("[...document.querySelectorAll('.jp-DirListing-item')]"  # laid out, not just in the DOM
           ".filter(e => e.getBoundingClientRect().height > 0)"
           ".map(e => e.querySelector('.jp-DirListing-itemText').textContent)")


# --- the Makefile starts what is tested here --------------------------------------------------


def test_make_targets_use_the_session_settings():
    if shutil.which("make") is None:
        pytest.skip("`make` is not installed")
    result = subprocess.run(["make", "-n", "-s", "-o", ".venv/.installed", "lab", "formgrader"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    lines = [line for line in result.stdout.splitlines() if "jupyter lab" in line]
    assert len(lines) == 2, result.stdout
    student, instructor = lines
    assert f'JUPYTER_CONFIG_PATH="{SESSION_CONFIG["student"]}' in student, student
    assert "--ServerApp.root_dir=release" in student, student
    assert f'JUPYTER_CONFIG_PATH="{SESSION_CONFIG["instructor"]}' in instructor, instructor
    assert "--ServerApp.root_dir=." in instructor, instructor
    assert "--allow-root" not in student + instructor  # the settings allow root themselves


# --- server side: no browser needed -------------------------------------------------------------


def test_student_server_has_no_formgrader_and_shows_release_only(student_lab):
    lab, course = student_lab
    assert lab.get("/formgrader")[0] == 404, "the formgrader server extension is on"
    status, page = lab.get("/lab")
    assert status == 200
    for plugin in FORMGRADER_PLUGINS:
        assert plugin.encode() in page, f"{plugin} is not in the page's disabledExtensions"
    status, body = lab.get("/api/contents")
    assert status == 200
    assert sorted(item["name"] for item in json.loads(body)["content"]) == [FIXTURE_LAB]
    assert lab.get("/api/contents/source")[0] == 404


def test_student_terminal_has_the_environment_on_path(student_lab):
    """JupyterLab's terminal finds the environment's `course` (a login shell reset PATH)."""
    from tornado.websocket import websocket_connect

    lab, _ = student_lab
    name = json.loads(lab.post("/api/terminals"))["name"]
    marker = secrets.token_hex(4)

    async def ask() -> str:
        ws = await websocket_connect(
            f"{lab.base.replace('http', 'ws')}/terminals/websocket/{name}?token={lab.token}")
        try:
            ws.write_message(json.dumps(["stdin", f"echo {marker}=$(command -v course)=\r"]))
            out, deadline = "", time.monotonic() + 60
            while f"{marker}=/" not in out and f"{marker}==" not in out:
                if time.monotonic() > deadline:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    message = await asyncio.wait_for(ws.read_message(), 5)
                    if message is None:
                        break
                    kind, *data = json.loads(message)
                    if kind == "stdout":
                        out += data[0]
            await asyncio.sleep(0.5)  # the rest of the line
            with contextlib.suppress(asyncio.TimeoutError):
                while (message := await asyncio.wait_for(ws.read_message(), 0.5)) is not None:
                    kind, *data = json.loads(message)
                    if kind == "stdout":
                        out += data[0]
            return out
        finally:
            ws.close()

    out = asyncio.run(ask())
    found = out.split(f"{marker}=")[-1].split("=")[0] if f"{marker}=" in out else None
    assert found == str(ENV_BIN / "course"), f"the terminal's `course` is {found!r}:\n{out[-800:]}"


# --- in the browser ----------------------------------------------------------------------------


def test_student_runs_a_release_notebook_without_formgrader(browser, student_lab, screenshots):
    lab, course = student_lab
    browser.get(lab.url(f"/lab/tree/{FIXTURE_LAB}/quiz.ipynb"))
    _until(browser, "document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length > 3",
           "the notebook's cells", screenshots)
    _until(browser, "document.querySelector('.jp-NotebookPanel .jp-Notebook-ExecutionIndicator')"
                    "?.dataset.status === 'idle'", "an idle kernel", screenshots)
    screenshots(browser, "1-student-notebook-open")

    # nbgrader: the Validate button only; no menu, panel or command of the formgrader
    assert "Nbgrader" not in browser.execute_script(f"return {MENU_LABELS}")
    commands = browser.execute_script(
        "return window.jupyterapp.commands.listCommands().filter(c => c.startsWith('nbgrader'))")
    assert not set(commands) & set(FORMGRADER_COMMANDS), commands
    assert browser.execute_script(
        "return document.querySelector('#jp-mainmenu-nbgrader, .nbgrader-mainarea-widget, "
        "iframe[src*=formgrader]') === null")
    assert browser.execute_script(
        "return [...document.querySelectorAll('.jp-NotebookPanel-toolbar .jp-ToolbarButton')]"
        ".some(e => e.textContent.trim() === 'Validate')"), "no Validate button"

    # Run > Run All Cells: the setup cell runs, the blank answer's test fails as it should
    _click(browser, ".lm-MenuBar-itemLabel", "Run", screenshots)
    _click(browser, ".lm-Menu-itemLabel", "Run All Cells", screenshots)
    _until(browser, "[...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')]"
                    ".some(e => e.textContent.includes('NotImplementedError'))",
           "the blank answer's NotImplementedError", screenshots)
    prompts = browser.execute_script(
        "return [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')]"
        ".map(e => e.textContent.trim()).filter(t => /\\[\\d+\\]/.test(t))")
    screenshots(browser, "2-student-run-all")
    assert prompts[:3] == ["[1]:", "[2]:", "[3]:"], prompts

    # the file browser's root is release/: the lab, no source/ or solutions/
    _until(browser, "document.querySelector('.jp-FileBrowser .jp-BreadCrumbs-home')",
           "the file browser's home button", screenshots).click()
    listing = _until(browser, f"{LISTING}.includes({FIXTURE_LAB!r}) && {LISTING}",
                     "the file browser's root", screenshots)
    screenshots(browser, "3-student-file-browser")
    assert listing == [FIXTURE_LAB], listing

    # nbgrader's Validate (kept for students) runs the notebook and names the failing test
    _click(browser, ".jp-NotebookPanel-toolbar .jp-ToolbarButton", "Validate", screenshots)
    _until(browser, "document.querySelector('.jp-Dialog')?.innerText.includes('Validation Results')"
                    " && document.querySelector('.jp-Dialog').innerText"
                    ".includes('NotImplementedError')",
           "nbgrader's validation results", screenshots)
    screenshots(browser, "4-student-validate")
    _click(browser, ".jp-Dialog button", "Ok", screenshots)
    assert not list(course.rglob("gradebook.db")), "the student's session created a gradebook"


def test_instructor_sees_the_formgrader_with_the_assignment(browser, instructor_lab, screenshots):
    lab, course = instructor_lab
    browser.get(lab.url("/lab"))
    _until(browser, f"{MENU_LABELS}.includes('Nbgrader')", "the Nbgrader menu", screenshots)
    listing = _until(browser, f"{LISTING}.includes('source') && {LISTING}",
                     "the course root in the file browser", screenshots)
    assert {"source", "release", "solutions"} <= set(listing), listing
    _click(browser, ".lm-MenuBar-itemLabel", "Nbgrader", screenshots)
    _until(browser, "[...document.querySelectorAll('.lm-Menu-itemLabel')]"
                    ".some(e => e.textContent.trim() === 'Formgrader')",
           "the menu item Nbgrader > Formgrader", screenshots)
    screenshots(browser, "5-instructor-lab-nbgrader-menu")

    browser.get(lab.url("/formgrader"))
    names = _until(browser, "[...document.querySelectorAll('#main-table td.name')]"
                            ".map(e => e.textContent.trim()).filter(Boolean)",
                   "the formgrader's assignment table", screenshots)
    screenshots(browser, "6-instructor-formgrader")
    assert names == [FIXTURE_LAB], names
    assert (course / "gradebook.db").is_file(), "the formgrader's gradebook is not the course's"


ANSWER = "task2_answer"  # the fixture's written answer, graded by hand (1 point)
NOTE = f"Marking scheme for {ANSWER}"  # the grader's note as the page renders it (`code`)
SCHEME = "any correct reason"  # text of that marking scheme
HIDDEN = ("add(-4, 10) should be 6", "BEGIN HIDDEN")  # a hidden test's text, its marker
COMMENT = "Clear and correct: one outlier moves the sum."


def _marks(course: Path) -> tuple[float | None, str | None]:
    """The written answer's manual score and comment in the course's gradebook."""
    with Gradebook(default_db_url(course)) as gb:
        grade = gb.find_grade(ANSWER, "quiz", FIXTURE_LAB, MARKED)
        comment = gb.find_comment(ANSWER, "quiz", FIXTURE_LAB, MARKED)
        return grade.manual_score, comment.manual_comment


def test_instructor_marks_in_the_formgrader(browser, instructor_course, instructor_lab,
                                            screenshots):
    """Manual Grading, a mark and a comment, Generate Feedback and Autograde, in the page."""
    from selenium.webdriver.common.by import By

    require_sandbox()
    course, graded = instructor_course
    assert graded.returncode == 0, graded.stdout[-2000:] + graded.stderr[-3000:]
    lab, _ = instructor_lab

    # Manual Grading > minilab > quiz > the solved submission, by the page's own links
    browser.get(lab.url("/formgrader"))
    _click(browser, "a[href$='/formgrader/gradebook']", "Manual Grading", screenshots)
    _click(browser, f"#main-table a[href$='/gradebook/{FIXTURE_LAB}']", FIXTURE_LAB, screenshots)
    _click(browser, f"#main-table a[href$='/gradebook/{FIXTURE_LAB}/quiz']", "quiz", screenshots)
    _until(browser, "document.querySelectorAll('#main-table a.name-hidden').length === 2",
           "the two submissions of quiz", screenshots)
    _click(browser, "#toggle_names", "Show All Names", screenshots)
    screenshots(browser, "7-instructor-manual-grading-quiz")
    _click(browser, "#main-table a.name-shown", MARKED, screenshots)
    _until(browser, "typeof formgrader !== 'undefined' && formgrader.grades?.loaded"
                    " && formgrader.comments?.loaded", "the submission's grades", screenshots)

    # (a) the marking scheme right after the answer; (b) no hidden test anywhere in the page
    page = browser.execute_script("""
        const answer = document.getElementById(arguments[0]).closest('.nbgrader_cell');
        answer.scrollIntoView({block: 'center'});
        const note = [...document.querySelectorAll('.text_cell_render')]
            .find(e => e.innerText.includes(arguments[1]));
        const follows = (a, b) => !!(a.compareDocumentPosition(b)
                                     & Node.DOCUMENT_POSITION_FOLLOWING);
        return {
            answer: answer.innerText,
            note: note ? note.innerText : null,
            code: note ? [...note.querySelectorAll('code')].map(e => e.textContent) : [],
            after: !!note && follows(answer, note),
            between: note ? [...document.querySelectorAll('.nbgrader_cell')]
                .filter(c => follows(answer, c) && follows(c, note)).length : null,
            text: document.documentElement.textContent,
        };""", ANSWER, NOTE)
    screenshots(browser, "8-instructor-answer-and-marking-scheme")
    assert "Every value enters the sum" in page["answer"], page["answer"]
    assert page["note"] and SCHEME in page["note"], page["note"]
    assert ANSWER in page["code"], page["code"]  # "Marking scheme for `task2_answer`"
    assert page["after"] and page["between"] == 0, page
    for text in HIDDEN:
        assert text not in page["text"], f"the formgrader shows {text!r}"

    # (c) a score and a comment typed into the cell's own boxes; they save when they lose focus
    assert _marks(course) == (None, None)
    score = browser.find_element(By.ID, ANSWER)
    score.click()
    score.send_keys("1")
    comment = browser.find_element(By.ID, f"{ANSWER}-comment")
    comment.click()  # the score box loses focus: saved
    comment.send_keys(COMMENT)
    browser.execute_script("return arguments[0].closest('.nbgrader_cell')"
                           ".querySelector('.panel-body')", score).click()  # the comment's turn
    deadline = time.monotonic() + 60
    while (marks := _marks(course)) != (1.0, COMMENT) and time.monotonic() < deadline:
        time.sleep(0.5)
    screenshots(browser, "9-instructor-marked")
    assert marks == (1.0, COMMENT), marks

    # (d) Manage Assignments > minilab's submissions > Generate Feedback for the student
    _click(browser, ".breadcrumb a[href$='/formgrader/gradebook']", "Manual Grading", screenshots)
    _click(browser, "a[href$='/formgrader/manage_assignments']", "Manage Assignments",
           screenshots)
    _click(browser, f"#main-table a[href$='/manage_submissions/{FIXTURE_LAB}']", "2", screenshots)
    link = _row_link(browser, MARKED, "Generate Feedback", screenshots)
    screenshots(browser, "10-instructor-manage-submissions")
    feedback = course / "feedback" / MARKED / FIXTURE_LAB / "quiz.html"
    assert feedback.is_file()  # course grade's, made before the mark
    shutil.rmtree(course / "feedback" / MARKED)
    link.click()
    dialog = _dialog(browser, "Generate Feedback's result", screenshots)
    screenshots(browser, "11-instructor-generate-feedback")
    assert (f"Successfully generated feedback for '{FIXTURE_LAB}' for student '{MARKED}'"
            in dialog), dialog
    _close_dialog(browser, screenshots)
    html = feedback.read_text(encoding="utf-8")
    assert COMMENT in html, "the comment is not in the feedback"
    for text in (*HIDDEN, SCHEME, "Marking scheme"):
        assert text not in html, f"the formgrader's feedback shows {text!r}"

    # (e) Autograde refuses, in the page, and leaves the graded copy as it was
    graded_copy = course / "autograded" / MARKED / FIXTURE_LAB / "quiz.ipynb"
    before = graded_copy.read_bytes()
    _row_link(browser, MARKED, "Autograde", screenshots).click()
    dialog = _dialog(browser, "Autograde's result", screenshots)
    screenshots(browser, "12-instructor-autograde-refused")
    assert f"There was an error autograding '{FIXTURE_LAB}' for student '{MARKED}'" in dialog
    assert "course grade <lab>" in dialog, dialog
    _close_dialog(browser, screenshots)
    assert graded_copy.read_bytes() == before, "Autograde changed the graded copy"
    assert _marks(course) == (1.0, COMMENT)
