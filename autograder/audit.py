"""Do the hidden tests have teeth? ``course audit [LAB]`` grades shortcuts against them.

For every answer cell of a lab's source notebooks the audit runs that task's test cells (visible
and hidden parts) against answers that must score nothing:

- ``blank``: the cell as students receive it (``release/``);
- ``random``: the solution's functions, but every floating-point number they return replaced by
  random values of the same shape, spread over the true answer's range (the global torch RNG
  draws them, so a seed reproduces them, as a student's ``torch.rand_like`` would);
- ``constant``: the same, every number replaced by the true answer's mean;
- each shipped wrong answer, ``autograder/samples/<lab>/wrong/<grade_id>[--<name>].py``, which
  must lose its own task's points and no other task's (the whole notebook's tests run);

and the solution, which must score full marks. It runs in this process, as a notebook would: the
setup cells once per notebook, then for each variant the notebook's answer cells and the test
cells concerned in a fresh namespace. Tests may only use names from setup cells and answers
(``docs/design.md``), so the other instructor cells (plots, model loads for figures) are skipped
and a whole lab audits in minutes. Hooks, training flags and tensors of the setup cells' objects
are restored after each variant, so one variant cannot spoil the next.

This is an instructor's tool for the lab's own sample answers: it runs them unsandboxed, with
the instructor's rights. Student submissions are graded by ``course grade`` only.
"""

from __future__ import annotations

import ast
import contextlib
import io
import math
import random
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import notebooks
from ._paths import RELEASE_DIR, REPO_ROOT, SOURCE_DIR, CourseError, resolve_labs
from .nbgrader_ext import is_setup_cell, is_test_cell
from .samples import grade_id_of, wrong_answers

SOLUTION, BLANK, RANDOM, CONSTANT, WRONG = "solution", "blank", "random", "constant", "wrong"
SHORTCUTS = (RANDOM, CONSTANT)


# ---------------------------------------------------------------------------------------------
# Shortcuts: the solution's output, with its numbers replaced
# ---------------------------------------------------------------------------------------------

class _Faked:
    """Counts the numbers a shortcut replaced (none means the shortcut does not apply)."""

    def __init__(self) -> None:
        self.count = 0


def fake_numbers(value: Any, kind: str, faked: _Faked | None = None) -> Any:
    """``value`` with every floating-point tensor, array or float replaced as ``kind`` says.

    ``random``: uniform values over the true value's [min, max] (the global torch RNG draws
    them); ``constant``: the true value's mean everywhere. Containers (dict, list, tuple) are
    rebuilt with their items faked; integers, strings and other objects are kept, so a
    ``(label, index, probability)`` keeps its label and index.
    """
    import numpy as np
    import torch

    faked = faked if faked is not None else _Faked()
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel():
        faked.count += 1
        true = value.detach()
        if kind == CONSTANT:
            return torch.full_like(true, float(true.double().mean()))
        low, high = float(true.min()), float(true.max())
        high = high if high > low else low + 1.0
        return low + (high - low) * torch.rand_like(true)
    if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating) and value.size:
        faked.count += 1
        return fake_numbers(torch.from_numpy(np.ascontiguousarray(value)), kind).numpy().astype(
            value.dtype)
    if isinstance(value, float):
        faked.count += 1
        return 0.5 if kind == CONSTANT else float(torch.rand(()))
    if isinstance(value, dict):
        return value.__class__((k, fake_numbers(v, kind, faked)) for k, v in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return value.__class__(fake_numbers(v, kind, faked) for v in value)
    return value


def shortcut(function: Callable, kind: str, faked: _Faked) -> Callable:
    """``function`` whose results go through :func:`fake_numbers` (a student's shortcut)."""
    def faking(*args: Any, **kwargs: Any) -> Any:
        return fake_numbers(function(*args, **kwargs), kind, faked)

    faking.__name__ = getattr(function, "__name__", "shortcut")
    faking.__wrapped__ = function  # type: ignore[attr-defined]
    return faking


def defined_functions(source: str) -> list[str]:
    """Names of the top-level functions a cell defines (none for text that is not Python)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return []
    return [node.name for node in body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


# ---------------------------------------------------------------------------------------------
# One notebook's cells, and running them as a notebook would
# ---------------------------------------------------------------------------------------------

@dataclass
class NotebookCells:
    """The cells of one source notebook the audit needs, in order."""

    name: str
    setup: list[str] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)      # grade_id -> solution text
    blanks: dict[str, str] = field(default_factory=dict)       # grade_id -> release text
    tests: dict[str, tuple[str, float]] = field(default_factory=dict)  # grade_id -> (src, pts)

    def tests_of(self, task: int | None) -> dict[str, tuple[str, float]]:
        return {g: t for g, t in self.tests.items() if task is None or notebooks.task_of(g) == task}

    def maximum(self, task: int | None = None) -> dict[int, float]:
        points: dict[int, float] = {}
        for grade_id, (_, pts) in self.tests_of(task).items():
            number = notebooks.task_of(grade_id)
            points[number] = points.get(number, 0.0) + pts
        return points


def read_cells(lab: str, root: Path = REPO_ROOT) -> list[NotebookCells]:
    """:class:`NotebookCells` for each notebook of ``source/<lab>`` (blanks from ``release/``)."""
    out = []
    for path in sorted((root / SOURCE_DIR / lab).glob("*.ipynb")):
        cells = NotebookCells(path.stem)
        for cell in notebooks.read(path).cells:
            meta = notebooks.nbgrader_meta(cell)
            if is_setup_cell(cell):
                cells.setup.append(cell.source)
            elif cell.cell_type == "code" and meta.get("solution"):
                cells.answers[meta["grade_id"]] = notebooks.solution_text(cell.source)
            elif is_test_cell(cell):
                cells.tests[meta["grade_id"]] = (cell.source, float(meta.get("points", 0)))
        release = root / RELEASE_DIR / lab / path.name
        if release.is_file():
            for cell in notebooks.read(release).cells:
                grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
                if grade_id in cells.answers:
                    cells.blanks[grade_id] = cell.source
        out.append(cells)
    return out


class _Shell:
    """The little of ``get_ipython()`` a setup cell may use: ``%matplotlib``."""

    def run_line_magic(self, name: str, line: str) -> None:
        if name != "matplotlib":
            raise CourseError(f"setup cells may use %matplotlib only, not %{name} {line}")


def _python(source: str) -> str:
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(source)


def _run(source: str, namespace: dict, label: str) -> None:
    """Run a cell as a kernel would, its output and warnings discarded (never raised)."""
    code = compile(_python(source), f"<{label}>", "exec")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(code, namespace)  # noqa: S102 - the course's own cells and sample answers


def _seed(seed: int = 0) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SharedState:
    """Hooks, training flags and tensors of the setup cells' objects, restorable after a variant."""

    _HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
              "_forward_hooks_always_called", "_state_dict_hooks", "_load_state_dict_pre_hooks")

    def __init__(self, namespace: dict) -> None:
        import torch
        from torch import nn
        self.modules: list[tuple[nn.Module, bool, dict[str, dict]]] = []
        self.tensors: list[tuple[torch.Tensor, torch.Tensor, bool]] = []
        self.weights: list[tuple[str, nn.Module, float]] = []
        for name, value in namespace.items():
            if isinstance(value, nn.Module):
                for module in value.modules():
                    hooks = {h: dict(getattr(module, h)) for h in self._HOOKS if hasattr(module, h)}
                    self.modules.append((module, module.training, hooks))
                self.weights.append((name, value, self._fingerprint(value)))
            elif isinstance(value, torch.Tensor):
                self.tensors.append((value, value.detach().clone(), value.requires_grad))

    @staticmethod
    def _fingerprint(module: Any) -> float:
        import torch
        with torch.no_grad():
            return float(sum(p.double().abs().sum() for p in module.state_dict().values()
                             if p.is_floating_point()))

    def restore(self) -> list[str]:
        """Put hooks, flags and tensors back; names of setup models whose weights changed."""
        import torch
        for module, training, hooks in self.modules:
            module.training = training
            for attr, saved in hooks.items():
                live = getattr(module, attr)
                live.clear()
                live.update(saved)
        with torch.no_grad():
            for tensor, saved, requires_grad in self.tensors:
                if tensor.shape == saved.shape:
                    tensor.copy_(saved)
                if tensor.is_leaf:
                    tensor.requires_grad_(requires_grad)
        torch.set_grad_enabled(True)
        return [name for name, module, before in self.weights
                if not math.isclose(self._fingerprint(module), before, rel_tol=1e-9)]


# ---------------------------------------------------------------------------------------------
# Variants and their verdicts
# ---------------------------------------------------------------------------------------------

@dataclass
class AuditRow:
    """What one variant of one answer earned on the test cells that ran."""

    lab: str
    notebook: str
    kind: str                      # solution, blank, random, constant or wrong
    name: str                      # the variant's name (the wrong answer's file stem, ...)
    task: int | None               # the task the variant answers (None for the solution)
    earned: dict[int, float]       # task -> points earned
    maximum: dict[int, float]      # task -> points possible
    failures: dict[str, str]       # test grade_id -> one-line reason
    seconds: float = 0.0
    applicable: bool = True        # False: the answer returns no numbers to fake
    test_ids: list[str] = field(default_factory=list)  # the test cells that ran

    @property
    def problem(self) -> str:
        """Why this row is a defect of the hidden tests ('' when it is not)."""
        if not self.applicable:
            return ""
        if self.kind == SOLUTION:
            lost = {t: m - self.earned.get(t, 0.0) for t, m in self.maximum.items()
                    if self.earned.get(t, 0.0) < m}
            return f"the solution loses points: {lost} ({self._reasons()})" if lost else ""
        own = self.earned.get(self.task, 0.0)
        if own > 0:
            passed = sorted(g for g in self._tests_of(self.task) if g not in self.failures)
            top = self.maximum.get(self.task, 0.0)
            return f"earns {own:g}/{top:g} on Task {self.task}: {', '.join(passed)}"
        if self.kind == WRONG:
            others = {t: m - self.earned.get(t, 0.0) for t, m in self.maximum.items()
                      if t != self.task and self.earned.get(t, 0.0) < m}
            if others:
                return f"also costs other tasks {others} ({self._reasons()})"
        return ""

    def _tests_of(self, task: int | None) -> list[str]:
        return [g for g in self.test_ids if notebooks.task_of(g) == task]

    def _reasons(self) -> str:
        return "; ".join(f"{g}: {r}" for g, r in self.failures.items())


def _one_line(error: BaseException) -> str:
    last = traceback.format_exception_only(error.__class__, error)[-1].strip()
    return last.splitlines()[0][:200]


class NotebookAudit:
    """Runs variants of one notebook's answers against its test cells."""

    def __init__(self, lab: str, cells: NotebookCells) -> None:
        self.lab, self.cells = lab, cells
        self.setup: dict = {"__name__": "__main__", "get_ipython": _Shell}
        _seed()
        for index, source in enumerate(cells.setup):
            try:
                _run(source, self.setup, f"{cells.name} setup {index}")
            except Exception as error:  # noqa: BLE001 - reported as the course's fault
                raise CourseError(f"{lab}/{cells.name}: setup cell {index} failed: "
                                  f"{_one_line(error)}") from error
        self.shared = SharedState(self.setup)

    def run(self, kind: str, grade_id: str | None, text: str | None = None, name: str = "",
            task_only: bool = True) -> AuditRow:
        """Answers with ``grade_id`` replaced as ``kind`` says; the tests of its task (or all)."""
        task = notebooks.task_of(grade_id) if grade_id else None
        tests = self.cells.tests_of(task if task_only else None)
        namespace = dict(self.setup)
        faked = _Faked()
        failures: dict[str, str] = {}
        started = time.perf_counter()
        _seed()
        for answer_id, solution in self.cells.answers.items():
            source = solution
            if answer_id == grade_id and kind in (BLANK, WRONG):
                source = text if text is not None else self.cells.blanks.get(answer_id, "")
            try:
                _run(source, namespace, answer_id)
            except Exception as error:  # noqa: BLE001 - a wrong or blank answer may raise
                if answer_id == grade_id or kind != SOLUTION:
                    continue
                raise CourseError(f"{self.lab}/{self.cells.name}: solution cell {answer_id} "
                                  f"failed: {_one_line(error)}") from error
            if answer_id == grade_id and kind in SHORTCUTS:
                for function in defined_functions(source):
                    namespace[function] = shortcut(namespace[function], kind, faked)
        earned: dict[int, float] = {}
        for test_id, (source, points) in tests.items():
            number = notebooks.task_of(test_id)
            earned.setdefault(number, 0.0)
            try:
                _run(source, namespace, test_id)
            except Exception as error:  # noqa: BLE001 - a failing test is the point
                failures[test_id] = _one_line(error)
            else:
                earned[number] += points
        changed = self.shared.restore()
        if changed:
            raise CourseError(f"{self.lab}/{self.cells.name}: {kind} {name or grade_id} changed "
                              f"the weights of the setup cells' {changed}; the audit stops "
                              "because later results would not be trustworthy")
        import matplotlib.pyplot as plt
        plt.close("all")
        maximum = {t: p for t, p in self.cells.maximum().items() if t in earned}
        applicable = kind not in SHORTCUTS or faked.count > 0
        return AuditRow(self.lab, self.cells.name, kind, name or kind, task, earned, maximum,
                        failures, time.perf_counter() - started, applicable, list(tests))


def variants(lab: str, cells: NotebookCells, tasks: set[int] | None = None
             ) -> Iterator[tuple[str, str | None, str | None, str]]:
    """``(kind, grade_id, text, name)`` for every variant of the notebook's answers."""
    wrong = {n: t for n, t in wrong_answers(lab).items() if grade_id_of(n) in cells.answers}
    yield SOLUTION, None, None, SOLUTION
    for grade_id, solution in cells.answers.items():
        task = notebooks.task_of(grade_id)
        if task is None or (tasks and task not in tasks) or not cells.tests_of(task):
            continue
        yield BLANK, grade_id, None, BLANK
        if defined_functions(solution):
            for kind in SHORTCUTS:
                yield kind, grade_id, None, kind
        for name, text in sorted(wrong.items()):
            if grade_id_of(name) == grade_id:
                yield WRONG, grade_id, text, name


def audit_lab(lab: str, root: Path = REPO_ROOT, tasks: set[int] | None = None,
              notebook: str | None = None,
              report: Callable[[AuditRow], None] | None = None) -> list[AuditRow]:
    """Every variant of every answer of ``lab`` (or of the given tasks / notebook), graded."""
    rows = []
    for cells in read_cells(lab, root):
        if notebook and cells.name != notebook:
            continue
        wanted = list(variants(lab, cells, tasks))
        if len(wanted) <= 1 and tasks:
            continue
        auditor = NotebookAudit(lab, cells)
        for kind, grade_id, text, name in wanted:
            row = auditor.run(kind, grade_id, text, name, task_only=kind in (BLANK, *SHORTCUTS))
            rows.append(row)
            if report:
                report(row)
        del auditor
    return rows


def format_row(row: AuditRow) -> str:
    task = f"Task {row.task}" if row.task is not None else "all"
    got = sum(row.earned.values())
    top = sum(row.maximum.values())
    if not row.applicable:
        verdict = "n/a (returns no numbers to fake)"
    else:
        verdict = "ok" if not row.problem else f"DEFECT: {row.problem}"
    return (f"{row.notebook:<34} {task:<8} {row.name:<34} {got:>5g}/{top:<5g} "
            f"{row.seconds:6.1f}s  {verdict}")


def run_audit(lab: str | None, root: Path, tasks: set[int], notebook: str | None) -> int:
    """Print one line per variant; 1 when any shortcut or wrong answer earns what it should not."""
    rows: list[AuditRow] = []
    for name in resolve_labs(lab, root):
        print(f"== {name}", flush=True)
        rows += audit_lab(name, root, tasks or None, notebook,
                          report=lambda row: print(format_row(row), flush=True))
    defects = [r for r in rows if r.problem]
    print(f"\n{len(rows)} variants, {len(defects)} defect(s).")
    return 1 if defects else 0
