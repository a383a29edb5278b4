"""nbgrader preprocessors that make its autograde trustworthy and close its batch failures.

- :class:`TrustedExecute`: the notebook's own cells (the student's answers, the instructor's
  cells) run in the submission's kernel, sandboxed when ``sandbox_mode`` is set; test cells
  never reach the kernel: :mod:`autograder.harness` runs them in this process against the
  kernel, and writes their verdict as the cell's output (nothing, or one error). A kernel that
  dies or ignores an interrupt is restarted, the cells that had finished are run again, and
  grading goes on: only the cell that killed it fails. A loaded machine changes no grade: the
  limits that guard the grader's own machinery (a kernel starting, the harness connecting) are
  generous, a cell's and a test call's time limit counts only the time its kernel could run
  (:class:`~autograder.harness.LoadClock`), and a run that fails outside its cells is run again
  from the start (then, if it still fails, every test says so in one line, never a plain 0).
- :class:`ShowVisibleTests`: in the graded copy, each test cell keeps only its visible part, so
  no hidden test appears in ``autograded/`` or in feedback.
- :class:`LimitOutputBytes`: caps each cell's output in *bytes* (nbgrader's LimitOutput counts
  lines, so a 10 MB single-line print passes it).
- :class:`HideTestCode`: for feedback, test cells show their description, name and failure
  message, never their code (nbgrader issue 917).
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_core.utils import ensure_async
from nbclient.exceptions import DeadKernelError
from nbclient.util import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Bool, Float, Integer, Unicode

from . import notebooks
from .config import (
    DEFAULT_INFRASTRUCTURE_RETRIES,
    DEFAULT_STARTUP_TIMEOUT,
    DEFAULT_TIMEOUT_STRETCH,
)
from .fast import explain_missing_names, mark_skipped
from .fast import plan as plan_fast
from .harness import (
    DEFAULT_MAX_REPLY_BYTES,
    Harness,
    KernelLink,
    LoadClock,
    failure_output,
    kernel_pid,
    split_hidden,
    torch_threads,
)
from .sandbox import NO_SANDBOX, SandboxCells, SandboxKernelManager

KERNEL_DIED = "KernelDied"
INTERRUPT_IGNORED = "InterruptIgnored"
NOT_GRADED = "NotGraded"  # the grader could not run the notebook: its tests say so
HIDDEN_NOTE = "# (hidden tests ran in the grader; they are not shown)"
RESPONSIVE_SECONDS = 15  # of its own time: a kernel that does not answer kernel_info is stuck
# Seconds to wait for a cell's last output once the kernel has replied (nbclient: 4 s). Output
# only: a late message is never an error (nbgrader's raise_on_iopub_timeout, which made one a
# failure of the whole notebook, is off), but under load 4 s drops the end of what a cell showed.
IOPUB_TIMEOUT = 15


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


def is_test_cell(cell: NotebookNode) -> bool:
    """An autograded test cell: graded code, not an answer."""
    meta = notebooks.nbgrader_meta(cell)
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def is_setup_cell(cell: NotebookNode) -> bool:
    """An instructor cell tagged ``setup``: its names are the tests' own (see docs/design.md)."""
    meta = notebooks.nbgrader_meta(cell)
    tags = cell.get("metadata", {}).get("tags", [])
    return (cell.cell_type == "code" and isinstance(tags, list) and "setup" in tags
            and not meta.get("solution") and not meta.get("grade"))


class TrustedCells:
    """The test and setup cells the harness runs, by ``grade_id``, from a trusted notebook."""

    def __init__(self, nb: NotebookNode, visible_only: bool = False) -> None:
        self.tests: dict[str, str] = {}
        self.setup: dict[str, str] = {}
        for cell in nb.cells:
            grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
            if not isinstance(grade_id, str):
                continue
            if is_test_cell(cell):
                source = cell.source
                self.tests[grade_id] = split_hidden(source)[0] if visible_only else source
            elif is_setup_cell(cell):
                self.setup[grade_id] = cell.source


class TrustedExecute(SandboxCells, Execute):
    """nbgrader's Execute with test cells run by the trusted harness, not by the kernel."""

    sandbox_mode = Unicode(NO_SANDBOX, help="root, user (see autograder.sandbox) or none").tag(
        config=True)
    trusted_dir = Unicode("", help="folder of the trusted notebooks (source/<lab>) whose test "
                                   "and setup cells the harness runs; empty: the notebook's own "
                                   "cells, visible parts only").tag(config=True)
    seed = Integer(0, help="seed of every kernel and of the harness").tag(config=True)
    max_reply_bytes = Integer(DEFAULT_MAX_REPLY_BYTES, help="cap on one kernel reply").tag(
        config=True)
    max_restarts = Integer(3, help="kernel restarts per notebook before the rest fails").tag(
        config=True)
    visible_only = Bool(False, help="run only the visible part of each test").tag(config=True)
    fast = Bool(False, help="skip the instructor cells no test needs (autograder.fast); a "
                "notebook whose running cells read a name only those define runs in full").tag(
        config=True)
    warm = Bool(False, help="sandboxed kernels of one submission are forked from one "
                "sandbox that has imported the lab's modules (autograder.zygote)").tag(config=True)
    submitted_dir = Unicode("", help="folder of the submission as handed in (fast grading "
                            "shows its outputs of the cells it skips)").tag(config=True)
    # nbclient's defaults guard the grader's own machinery too tightly for a loaded machine.
    startup_timeout = Integer(DEFAULT_STARTUP_TIMEOUT, help="seconds for a kernel to start and "
                              "answer (only the grader's code runs then)").tag(config=True)
    iopub_timeout = Integer(IOPUB_TIMEOUT, help="seconds to wait for a cell's last output after "
                            "its reply").tag(config=True)
    timeout_stretch = Float(DEFAULT_TIMEOUT_STRETCH, help="a cell or test call may take this "
                            "many times its timeout when its kernel waits for a CPU (see "
                            "autograder.harness.LoadClock); 1: wall-clock time").tag(config=True)
    infrastructure_retries = Integer(DEFAULT_INFRASTRUCTURE_RETRIES, help="runs of a notebook "
                                     "again after a failure outside its cells").tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # nbgrader's Execute sets kernel_manager_class in its constructor, over any config.
        if self.sandbox_mode != NO_SANDBOX:
            self.kernel_manager_class = SandboxKernelManager
        # A few seconds' delay of a cell's output on a loaded machine is not an error.
        self.raise_on_iopub_timeout = False
        self._cell_clock: tuple[str, LoadClock] | None = None
        self._skip: frozenset[str] = frozenset()
        self._imported = False

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        if self.warm and isinstance(km, SandboxKernelManager):
            from .zygote import lab_modules

            km.warm = True
            km.preload = lab_modules(Path(self.trusted_dir)) if self.trusted_dir else []
            if not self._imported:  # the harness needs them too: imported while the zygote is
                self._imported = True
                threading.Thread(target=_import_quietly, args=(km.preload,), daemon=True).start()
        return km

    def _trusted(self, nb: NotebookNode, resources: Any) -> tuple[TrustedCells, NotebookNode]:
        name = (resources or {}).get("nbgrader", {}).get("notebook")
        if self.trusted_dir and name:
            trusted = notebooks.read(Path(self.trusted_dir) / f"{name}.ipynb")
            return TrustedCells(trusted, self.visible_only), trusted
        return TrustedCells(nb, visible_only=True), nb

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None):
        """Run the notebook; a run that fails outside its cells is run again from the start.

        Whatever a cell does is handled inside the run (its error, its time limit, a kernel it
        kills), so an exception that reaches here is the grader's: a kernel that did not start,
        a connection lost, nbclient's own error. The notebook is run again on a fresh kernel,
        up to ``infrastructure_retries`` times; if it still fails, each test cell fails with
        one readable line saying the notebook was not graded, and the other notebooks of the
        submission are graded as usual.
        """
        self._cells, trusted = self._trusted(nb, resources)
        self._skip = plan_fast(nb, trusted).skip if self.fast else frozenset()
        if self._skip:
            try:
                return self._preprocess(nb, resources, km)
            finally:  # a name read where the plan could not see it: the error says why
                explain_missing_names(nb, trusted, self._skip)
        return self._preprocess(nb, resources, km)

    def _preprocess(self, nb: NotebookNode, resources: Any, km: Any):
        self._submitted_outputs = self._outputs_as_submitted(resources) if self._skip else {}
        pristine = copy.deepcopy(nb)
        name = (resources or {}).get("nbgrader", {}).get("notebook") or "the notebook"
        why = ""
        for attempt in range(1 + max(0, self.infrastructure_retries)):
            if attempt:
                nb.cells, nb.metadata = copy.deepcopy(pristine.cells), copy.deepcopy(
                    pristine.metadata)
            try:
                return self._run_once(nb, resources, km)
            except Exception as exc:  # noqa: BLE001 - a failure of the grader, see above
                why = _one_line(exc)
                self.log.warning("Run %d of %s failed outside its cells (%s)%s", attempt + 1,
                                 name, why, "; running it again" if attempt <
                                 self.infrastructure_retries else "")
                self._discard_kernel()
        message = (f"NOT GRADED: the grader could not run this notebook ({why}; tried "
                   f"{1 + max(0, self.infrastructure_retries)} times); grade this student again")
        nb.cells, nb.metadata = pristine.cells, pristine.metadata
        for cell in nb.cells:  # nothing ran: no output, not even what the submission held
            if cell.cell_type == "code":
                cell.outputs = [_error(NOT_GRADED, message)] if is_test_cell(cell) else []
                cell.execution_count = None
        return nb, resources

    def _outputs_as_submitted(self, resources: Any) -> dict[str, list]:
        """The outputs of the submitted notebook's cells, by ``grade_id`` (nbgrader clears
        them before this runs); none when the file is missing or unreadable."""
        name = (resources or {}).get("nbgrader", {}).get("notebook")
        path = Path(self.submitted_dir) / f"{name}.ipynb" if self.submitted_dir and name else None
        try:
            cells = notebooks.read(path).cells if path is not None else []
        except Exception:  # noqa: BLE001 - the student's file; nbgrader has read it already
            return {}
        return {notebooks.nbgrader_meta(c).get("grade_id"): c.get("outputs", [])
                for c in cells if c.cell_type == "code"}

    def _run_once(self, nb: NotebookNode, resources: Any, km: Any):
        self._replay: list[str] = []
        self._restarts = 0
        self._dead = ""
        self._cell_clock = None
        self.harness = Harness(self.seed, self._make_link)
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self.harness.close()

    def _discard_kernel(self) -> None:
        """After a failed run: whatever is left of its kernel is stopped."""
        if self.km is not None:
            with contextlib.suppress(Exception):
                self._cleanup_kernel()
        self.km = self.kc = None

    def _make_link(self) -> KernelLink:
        if not self._dead and not run_sync(self._kernel_alive)():
            self._recover("the kernel died between cells")  # e.g. a thread the notebook left
        if self._dead:
            raise DeadKernelError(self._dead)
        return KernelLink(self.km, timeout=self.timeout or 180, max_bytes=self.max_reply_bytes,
                          startup_timeout=self.startup_timeout, stretch=self.timeout_stretch)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int):
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if cell.cell_type != "code":
            return cell, resources
        if grade_id in self._cells.tests:
            return self._run_test(cell, grade_id), resources
        if is_test_cell(cell):  # a test the trusted notebook does not have: never run
            cell.outputs = [_error("UnknownTest", "this test cell is not part of the lab")]
            return cell, resources
        if self._dead:
            cell.outputs = [_error(KERNEL_DIED, self._dead)]
            return cell, resources
        if grade_id in self._skip:
            cell.outputs = copy.deepcopy(self._submitted_outputs.get(grade_id, []))
            mark_skipped(cell)
            return cell, resources
        setup = self._cells.setup.get(grade_id) if isinstance(grade_id, str) else None
        harness_setup = None
        if setup is not None:
            cell.source = setup
            # The harness runs the same trusted cell while the kernel does (two processes: the
            # model loads and imports overlap instead of adding up).
            harness_setup = threading.Thread(target=self._setup_beside_kernel,
                                             args=(grade_id, setup), daemon=True)
            harness_setup.start()
        try:
            self._run_cell(cell, resources, index)
        finally:  # also when the run fails: no setup cell is left running into the next run
            if harness_setup is not None:
                harness_setup.join()
        return cell, resources

    def _setup_beside_kernel(self, grade_id: str, setup: str) -> None:
        """The harness's run of a setup cell, while the kernel runs it too: on one torch thread,
        since the kernel's threads want the same cores (Lab 2's first setup cell took 2.9 s in
        the harness with two threads on this 2-core machine, 0.9 s with one, and the kernel's
        copy finished sooner too)."""
        with torch_threads(1):
            self.harness.run_setup(grade_id, setup)

    def _run_cell(self, cell: NotebookNode, resources: Any, index: int) -> None:
        try:
            super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            cell.outputs = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream"]
            cell.outputs.append(_error(
                KERNEL_DIED, "the kernel died (crash, os._exit, memory or CPU-time cap) while "
                "this cell ran; it was restarted and the cells before were run again"))
            self._recover("the kernel died")
        else:
            timed_out = any(o.get("ename") == "CellTimeoutError" for o in cell.outputs
                            if o.get("output_type") == "error")
            if timed_out:  # one line, not the KeyboardInterrupt traceback of the interrupt
                cell.outputs = [o for o in cell.outputs if o.get("output_type") != "error"]
                cell.outputs.append(_error("CellTimeoutError", (
                    f"this cell ran past its time limit ({self._get_timeout(cell)} s) on the "
                    "grading machine and was stopped")))
            if timed_out and not self._responsive():
                cell.outputs.append(_error(
                    INTERRUPT_IGNORED, "the cell ignored the interrupt after its time limit; "
                    "the kernel was restarted and the cells before were run again"))
                self._recover("a cell ignored the interrupt")
            elif cell.source.strip():
                self._replay.append(cell.source)

    def _run_test(self, cell: NotebookNode, grade_id: str) -> NotebookNode:
        outcome = self.harness.run_test(grade_id, self._cells.tests[grade_id])
        self._drain_iopub()
        cell.outputs = [] if outcome.passed else [failure_output(outcome)]
        link = self.harness.link
        if link is not None and link.broken:  # a request timed out and the interrupt failed
            self._recover(link.broken)
        return cell

    def _drain_iopub(self) -> None:
        """Discard what the kernel broadcast while the harness talked to it.

        The agent's replies to the harness are comm messages, which Jupyter broadcasts on the
        iopub channel to every client, this one included. Left unread, a test's large replies
        fill this client's queue past ZeroMQ's high-water mark, and the next cell's own
        messages are dropped: nbclient then waits ``iopub_timeout`` for a "done" that never
        comes (15 s a cell, measured on Lab 2). None of them belongs to a cell.
        """
        if self.kc is None:
            return

        async def drain() -> int:
            count = 0
            while True:
                try:
                    await ensure_async(self.kc.iopub_channel.get_msg(timeout=0))
                except Empty:
                    return count
                count += 1

        with contextlib.suppress(Exception):  # a dead kernel is noticed by the next cell
            run_sync(drain)()

    # --- time limits on a loaded machine -----------------------------------------------------

    def _get_timeout(self, cell: NotebookNode | None) -> int | None:
        if cell is None:  # the grader's own request (kernel_info as a run starts), no cell's
            return self.startup_timeout
        return super()._get_timeout(cell)

    async def _async_poll_for_reply(self, msg_id: str, cell: NotebookNode, timeout: Any,
                                    *args: Any, **kwargs: Any) -> dict:
        # nbclient waits ``timeout`` seconds of wall-clock time, then calls
        # _async_handle_timeout; the clock started here says how much of it the kernel had.
        self._cell_clock = (msg_id, LoadClock(kernel_pid(self.km), self.timeout_stretch))
        try:
            return await super()._async_poll_for_reply(msg_id, cell, timeout, *args, **kwargs)
        finally:
            self._cell_clock = None

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None):
        """A cell's wall-clock time is up: wait on while its kernel has had less than that.

        Time the kernel spent waiting for a CPU (other processes running) does not count, so a
        correct cell is not stopped for the machine's load; a cell that uses its time, as an
        endless loop does, is stopped when its time is up, at the latest at ``timeout_stretch``
        times it. The reply, if it comes meanwhile, is the cell's.
        """
        pending, self._cell_clock = self._cell_clock, None
        if cell is not None and pending is not None:
            msg_id, clock = pending
            while True:
                left = clock.left(timeout)
                try:  # once time is up, what has arrived is still read (this process may lag)
                    msg = await ensure_async(self.kc.shell_channel.get_msg(
                        timeout=min(max(left, 0.0), 5.0)))
                except Empty:
                    if left <= 0:
                        break
                    await self._async_check_alive()  # DeadKernelError: see preprocess_cell
                    continue
                if msg.get("parent_header", {}).get("msg_id") == msg_id:
                    return msg
            self.log.info("Cell time limit: %.0f s of wall-clock time, %.0f s of it waiting "
                          "for a CPU", clock.wall(), clock.waited())
        return await super()._async_handle_timeout(timeout, cell)

    async def _kernel_alive(self) -> bool:
        return self.km is not None and bool(await ensure_async(self.km.is_alive()))

    def _responsive(self) -> bool:
        """Whether the kernel answers a kernel_info request within a few seconds of its time."""
        async def ask() -> bool:
            msg_id = self.kc.kernel_info()
            clock = LoadClock(kernel_pid(self.km), self.timeout_stretch)
            while True:
                left = clock.left(RESPONSIVE_SECONDS)
                try:
                    msg = await self.kc.shell_channel.get_msg(timeout=min(max(left, 0.0), 1))
                except Exception:  # noqa: BLE001 - queue.Empty and friends: keep waiting
                    if left <= 0 or not await self.km.is_alive():
                        return False
                    continue
                if msg["parent_header"].get("msg_id") == msg_id:
                    return True

        return run_sync(ask)()

    async def _async_cleanup_kernel(self) -> None:
        """Stop the kernel after the run. The notebook is graded by then: a kernel that does
        not stop cleanly is killed, and never costs the notebook its results."""
        km, kc = self.km, self.kc  # nbclient forgets them even when it fails to stop them
        try:
            await super()._async_cleanup_kernel()
        except Exception as exc:  # noqa: BLE001 - see above
            self.log.warning("The kernel did not shut down cleanly (%s); killing it",
                             _one_line(exc))
            self.km = self.kc = None
            if kc is not None:
                with contextlib.suppress(Exception):
                    await ensure_async(kc.stop_channels())
            if km is not None:
                with contextlib.suppress(Exception):
                    await ensure_async(km.shutdown_kernel(now=True))
                with contextlib.suppress(Exception):
                    if await ensure_async(km.is_alive()):
                        await ensure_async(km.signal_kernel(signal.SIGKILL))
                with contextlib.suppress(Exception):
                    await ensure_async(km.cleanup_resources())

    # nbclient binds the blocking form to its own coroutine at class creation: rebind it.
    _cleanup_kernel = run_sync(_async_cleanup_kernel)

    def _recover(self, why: str) -> None:
        """Restart the kernel and run again the cells that had finished; give up after a few."""
        self.harness.reset_link()
        self._restarts += 1
        if self._restarts > self.max_restarts:
            self._dead = (f"not run: {why}, and the kernel was restarted {self.max_restarts} "
                          "times already")
            return
        try:
            run_sync(self._restart)()
        except Exception as exc:  # noqa: BLE001 - the kernel cannot be brought back
            self._dead = f"not run: {why}, and the kernel could not be restarted ({exc})"

    async def _restart(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        await self.km.restart_kernel(now=True)
        await self.async_start_new_kernel_client()
        for source in self._replay:
            replay = NotebookNode(cell_type="code", source=source, metadata={}, outputs=[],
                                  execution_count=None)
            # nbclient stores the executed cell at its index in the notebook: a scratch slot at
            # the end, removed after (index -1 overwrote the notebook's last cell, often a
            # written answer, in the graded copy of every submission whose kernel died)
            self.nb.cells.append(replay)
            try:
                await self.async_execute_cell(replay, len(self.nb.cells) - 1,
                                              store_history=False)
            finally:
                self.nb.cells.remove(replay)


def _import_quietly(modules: list[str]) -> None:
    """Import trusted modules ahead of need (a name that fails is left to the cell using it)."""
    import importlib

    for name in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception, on one line, shortened."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + " ..."


class ReplayOutputs(NbGraderPreprocessor):
    """In place of running a notebook: the outputs another machine's grading gave it.

    ``course grade --scheduler`` (:mod:`autograder.cluster`) runs a submission on a cluster
    worker exactly as a local worker does, into a private gradebook, and sends back the graded
    notebooks; the coordinator then autogrades the same staged submission with this instead of
    :class:`TrustedExecute`, so that its own gradebook, feedback and notes come from the same
    code as a local grading's. The notebooks match cell for cell (the same staged files through
    the same steps); one that does not is recorded as not graded.
    """

    replay_dir = Unicode("", help="folder of the graded notebooks to take outputs from").tag(
        config=True)

    def preprocess(self, nb: NotebookNode, resources: Any):
        name = (resources or {}).get("nbgrader", {}).get("notebook")
        try:
            graded = notebooks.read(Path(self.replay_dir) / f"{name}.ipynb")
        except Exception:  # noqa: BLE001 - missing or unreadable: not graded, said below
            graded = None
        if graded is not None:  # the marking schemes ShowMarkSchemes added there come again
            graded.cells = [c for c in graded.cells if not is_grader_note(c)]
        ids = [notebooks.nbgrader_meta(c).get("grade_id") for c in nb.cells]
        if graded is None or ids != [notebooks.nbgrader_meta(c).get("grade_id")
                                     for c in graded.cells]:
            message = ("NOT GRADED: the cluster worker's graded copy of this notebook is "
                       "missing or does not match the submission; grade this student again")
            for cell in nb.cells:
                if cell.cell_type == "code":
                    cell.outputs = [_error(NOT_GRADED, message)] if is_test_cell(cell) else []
            return nb, resources
        for cell, done in zip(nb.cells, graded.cells, strict=True):
            if cell.cell_type == "code":
                cell.outputs = done.get("outputs", [])
                cell.execution_count = done.get("execution_count")
        nb.metadata = graded.metadata
        return nb, resources


class ShowVisibleTests(NbGraderPreprocessor):
    """Keep only the visible part of each test cell (the graded copy and feedback show that)."""

    def preprocess_cell(self, cell: NotebookNode, resources: Any, cell_index: int):
        if is_test_cell(cell) and notebooks.BEGIN_HIDDEN in cell.source:
            visible = notebooks.drop_region(cell.source, notebooks.BEGIN_HIDDEN,
                                            notebooks.END_HIDDEN)
            cell.source = f"{visible}\n{HIDDEN_NOTE}"
        return cell, resources


FIGURE_TYPES = ("image/png", "image/jpeg")  # kept as figures, within their own budget


class LimitOutputBytes(NbGraderPreprocessor):
    """Cap each cell's outputs: text to ``max_bytes``, figures to ``max_image_bytes``.

    Text (streams, ``text/plain``, HTML, SVG, JSON, ...) and figures (PNG, JPEG, as base64)
    have separate budgets, so that a long print cannot push a figure out and the person
    marking a written question sees the maps it is about. Figures also share a budget for the
    whole notebook (``max_notebook_image_bytes``); a figure over either is replaced by one line
    saying so. Error tracebacks are kept.
    """

    max_bytes = Integer(100_000, help="maximum bytes of text output per cell").tag(config=True)
    max_image_bytes = Integer(5_000_000, help="maximum bytes of figures (base64) per cell").tag(
        config=True)
    max_notebook_image_bytes = Integer(40_000_000, help="maximum bytes of figures (base64) per "
                                       "notebook").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any):
        self._notebook_images = self.max_notebook_image_bytes
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, cell_index: int):
        if cell.cell_type != "code":
            return cell, resources
        text_left, images_left = self.max_bytes, self.max_image_bytes
        notebook_left = getattr(self, "_notebook_images", self.max_notebook_image_bytes)
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = str(out.get("text", ""))
                if len(text.encode()) > text_left:
                    text = text.encode()[:max(text_left, 0)].decode(errors="ignore")
                    text += f"\n... output truncated to {self.max_bytes} bytes ...\n"
                    out.text = text
                text_left -= len(out.text.encode())
            elif isinstance(out.get("data"), dict):
                figures = {k: v for k, v in out.data.items() if k in FIGURE_TYPES}
                texts = {k: v for k, v in out.data.items() if k not in FIGURE_TYPES}
                figure_size = sum(len(str(v)) for v in figures.values())
                text_size = sum(len(str(v)) for v in texts.values())
                if figures and figure_size <= min(images_left, notebook_left):
                    images_left -= figure_size
                    notebook_left -= figure_size
                    if text_size > text_left:  # the figure stays, its long text goes
                        out.data = dict(figures)
                    else:
                        text_left -= text_size
                elif figures:
                    out = _removed("figure", figure_size + text_size,
                                   f"{self.max_image_bytes} bytes of figures per cell or "
                                   f"{self.max_notebook_image_bytes} per notebook")
                elif text_size > text_left:
                    out = _removed("output", text_size, f"{self.max_bytes} bytes per cell")
                    text_left -= len(out.text)
                else:
                    text_left -= text_size
            kept.append(out)
        cell.outputs = kept
        self._notebook_images = notebook_left
        return cell, resources


def _removed(what: str, size: int, limit: str) -> NotebookNode:
    return NotebookNode(output_type="stream", name="stdout", text=(
        f"... {what} of {size} bytes removed (over the grader's limit of {limit}) ...\n"))


class HideTestCode(NbGraderPreprocessor):
    """Replace each test cell's code by its description and keep only its failure message."""

    def preprocess_cell(self, cell: NotebookNode, resources: Any, cell_index: int):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            return cell, resources
        source = cell.source.strip()
        doc = ""
        if source.startswith(('"""', "'''")):
            quote = source[:3]
            end = source.find(quote, 3)
            doc = source[3:end].strip() if end > 0 else ""
        cell.source = f"# Test {meta.get('grade_id', '')}: {doc or 'checks your answer'}\n" \
                      "# (the test's code is not shown)"
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                outputs.append(_error(out.get("ename", "Error"), out.get("evalue", "")))
            elif out.get("output_type") == "stream" and out.get("name") == "stdout":
                outputs.append(out)
        cell.outputs = outputs
        return cell, resources


GRADER_NOTE = "grader_note"  # metadata.autograder key of the cells only graders see


def is_grader_note(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {}).get("autograder", {})
    return isinstance(meta, dict) and bool(meta.get(GRADER_NOTE))


class ShowMarkSchemes(NbGraderPreprocessor):
    """After each answer graded by hand, the question's marking scheme and model answer.

    They come from the trusted source notebook (``trusted_dir``; the release never has them)
    and go into the graded copy as a markdown cell marked as a grader's note, which the
    formgrader shows next to the answer and :class:`DropGraderNotes` removes from feedback.
    A cell of the submission that claims to be a grader's note is removed and reported.
    """

    trusted_dir = Unicode("", help="folder of the lab's source notebooks").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any):
        resources = {} if resources is None else resources
        name = resources.get("nbgrader", {}).get("notebook")
        path = Path(self.trusted_dir) / f"{name}.ipynb" if self.trusted_dir and name else None
        notes = _grader_notes(notebooks.read(path)) if path and path.is_file() else {}
        cells = []
        for cell in nb.cells:
            if is_grader_note(cell):
                resources.setdefault("sanitized", []).append(
                    "a cell claiming to be a grader's note removed")
                continue
            cells.append(cell)
            meta = notebooks.nbgrader_meta(cell)
            grade_id = meta.get("grade_id")
            if meta.get("grade") and meta.get("solution") and grade_id in notes:
                cells.append(notes[grade_id])
        nb.cells = cells
        return nb, resources


def _grader_notes(trusted: NotebookNode) -> dict[str, NotebookNode]:
    """``grade_id`` -> the grader's note for each answer of ``trusted`` graded by hand."""
    from nbformat.v4 import new_markdown_cell

    notes = {}
    for cell in trusted.cells:
        meta = notebooks.nbgrader_meta(cell)
        if not (meta.get("grade") and meta.get("solution")):
            continue
        scheme = notebooks.region(cell.source, notebooks.BEGIN_SCHEME, notebooks.END_SCHEME)
        model = notebooks.solution_text(cell.source)
        text = (f"**Marking scheme for `{meta.get('grade_id')}` ({meta.get('points', 0)} "
                "points), shown to graders only** (from `source/`; never in the student's "
                "copy or feedback)\n\n" + (scheme or "_(no marking scheme in the source)_"))
        if model.strip():
            quoted = "\n".join(f"> {line}" for line in model.splitlines())
            text += f"\n\n**Model answer**\n\n{quoted}"
        note = new_markdown_cell(text)
        note.metadata["autograder"] = {GRADER_NOTE: True}
        notes[meta["grade_id"]] = note
    return notes


class DropGraderNotes(NbGraderPreprocessor):
    """Remove the graders' notes (marking schemes) from a notebook: for feedback."""

    def preprocess(self, nb: NotebookNode, resources: Any):
        nb.cells = [cell for cell in nb.cells if not is_grader_note(cell)]
        return nb, resources


def feedback_preprocessors() -> list[type]:
    """The preprocessors of every feedback this course generates, nbgrader's own commands
    and the formgrader's button included (``nbgrader_config.py`` uses this list): grades,
    no graders' notes, no test code, no active HTML."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades

    from .safe_output import SanitizeNotebook

    return [GetGrades, DropGraderNotes, HideTestCode, SanitizeNotebook,
            CSSHTMLHeaderPreprocessor]


PLAIN_AUTOGRADE_REFUSED = (
    "This course autogrades with `course grade <lab>` only: nbgrader's own autograde (the "
    "formgrader's Autograde button, `nbgrader autograde`) would run the hidden tests inside the "
    "student's kernel, without the sandbox, and replace the graded copies. Nothing was changed.")
_trusted_autograde = threading.local()


def refuse_plain_autograde() -> None:
    """Make nbgrader's Autograde refuse to start, in this process, unless the course's grading
    worker runs it (:func:`trusted_autograde`). ``nbgrader_config.py`` calls this, so the
    formgrader's server and the ``nbgrader`` commands refuse before removing anything."""
    from nbgrader.converters import Autograde, NbGraderException

    if getattr(Autograde, "_course_refuses", False):
        return
    start = Autograde.start

    def guarded_start(self: Any) -> None:
        if not getattr(_trusted_autograde, "active", False):
            self.log.error(PLAIN_AUTOGRADE_REFUSED)
            raise NbGraderException(PLAIN_AUTOGRADE_REFUSED)
        start(self)

    Autograde.start = guarded_start
    Autograde._course_refuses = True


@contextlib.contextmanager
def trusted_autograde():
    """Within this block, this thread's Autograde runs (the worker's, with our preprocessors)."""
    _trusted_autograde.active = True
    try:
        yield
    finally:
        _trusted_autograde.active = False


def use_collection_time() -> None:
    """Make nbgrader read a submission's time as ``course grade`` does, in this process.

    nbgrader tells a graded submission from one that needs grading by comparing the
    gradebook's time with ``submitted/<student>/<lab>/timestamp.txt``. ``course grade`` never
    trusts that file (a student can write it): it records the collection time
    (:mod:`autograder.intake`). Without this, the formgrader's Manage Submissions page lists
    every graded submission as "needs autograding". ``nbgrader_config.py`` calls this.
    """
    import tempfile

    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.utils import parse_utc

    from .intake import read_submission

    if getattr(NbGraderAPI, "_course_collection_time", False):
        return

    def get_submitted_timestamp(self: Any, assignment_id: str, student_id: str):
        folder = Path(self.coursedir.format_path(self.coursedir.submitted_directory,
                                                 student_id, assignment_id)).absolute()
        source = Path(self.coursedir.format_path(self.coursedir.source_directory, ".",
                                                 assignment_id))
        expected = sorted(p.name for p in source.glob("*.ipynb"))
        with tempfile.TemporaryDirectory(prefix="course-time-") as tmp:
            got = read_submission(folder, expected, Path(tmp))
        return parse_utc(got.timestamp) if got.timestamp else None

    NbGraderAPI.get_submitted_timestamp = get_submitted_timestamp
    NbGraderAPI._course_collection_time = True
