"""Which of a notebook's cells a grade does not need: fast grading (``course grade``).

A grade is decided by the test cells, which the harness runs in the grader's process on the
setup cells' objects and the student's answers (``docs/design.md``, "Tests that run in both
places"). The other instructor cells (a model loaded for a figure, the figure itself) cost most
of a notebook's run time and decide nothing, so fast grading does not run them: in the graded
copy they keep the outputs the student submitted, under a line saying so, and the person
marking written answers still sees the student's figures.

A student's code may still use a name such a cell binds (an extra cell that plots ``img``, a
function reading a global ``model``, a name a later figure cell binds again). Names are read
statically (:func:`names_of`) and, in notebook order, a skippable cell runs after all when code
that runs may see what it binds (:func:`plan`), so that fast grading gives the grade a full
run gives. What static reading cannot see (``globals()["img"]``, ``exec``, a skipped cell's
files or seeds) is not run: a name that is then missing fails with Python's ``NameError``,
explained under the error (:func:`explain_missing_names`); ``course grade --full`` runs every
cell.
"""

from __future__ import annotations

import ast
import re
import symtable
from dataclasses import dataclass, field

from nbformat import NotebookNode

from . import notebooks

SKIPPED_NOTE = ("(not run when grading: it draws or prepares a figure and decides no grade; "
                "the outputs below are the ones submitted)\n")


def is_skippable(cell: NotebookNode) -> bool:
    """An instructor code cell of a trusted notebook that no test needs: locked, neither an
    answer, a test nor a setup cell."""
    from .nbgrader_ext import is_setup_cell, is_test_cell

    meta = notebooks.nbgrader_meta(cell)
    return (cell.cell_type == "code" and bool(meta.get("locked")) and not meta.get("solution")
            and not is_test_cell(cell) and not is_setup_cell(cell)
            and isinstance(meta.get("grade_id"), str))


@dataclass
class Names:
    """What a piece of code binds at module level and which globals it reads.

    ``reads``: globals read at module level before the code binds them itself (in the order
    Python evaluates statements, so ``for i in ...: print(i)`` reads no ``i``); ``fn_reads``:
    globals read inside the functions, lambdas, comprehensions and classes it defines, which
    may run at any later time; ``imports``: for a name bound only by import statements, what
    it imports (``"graphviz"``, ``"torch.nn.functional"``).
    """

    defines: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)
    fn_reads: set[str] = field(default_factory=set)
    imports: dict[str, str] = field(default_factory=dict)


_CELL_MAGICS_WITH_PYTHON = re.compile(r"\A\s*%%(time|timeit|capture|prun)\b[^\n]*\n")


def _python(source: str) -> str:
    """The cell as Python: IPython's magics and shell escapes turned into calls; the body of a
    cell magic that runs its body as Python (``%%time``, ``%%capture``) is kept as the body."""
    from IPython.core.inputtransformer2 import TransformerManager

    magic = _CELL_MAGICS_WITH_PYTHON.match(source)
    if magic:
        source = source[magic.end():]
    return TransformerManager().transform_cell(source)


class _FirstUse(ast.NodeVisitor):
    """The first thing module-level code does with each name, in evaluation order: ``load``
    or ``store``. Bodies of child scopes are left to :mod:`symtable`."""

    def __init__(self) -> None:
        self.first: dict[str, str] = {}

    def _use(self, name: str, what: str) -> None:
        self.first.setdefault(name, what)

    def visit_Name(self, node: ast.Name) -> None:
        self._use(node.id, "load" if isinstance(node.ctx, ast.Load) else "store")

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self._use(node.target.id, "load")
        self.visit(node.value)
        self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_withitem(self, node: ast.withitem) -> None:
        self.visit(node.context_expr)
        if node.optional_vars is not None:
            self.visit(node.optional_vars)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._use((alias.asname or alias.name).split(".")[0], "store")

    visit_ImportFrom = visit_Import

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *node.args.defaults,
                     *[d for d in node.args.kw_defaults if d is not None]]:
            self.visit(expr)
        self._use(node.name, "store")

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *[k.value for k in node.keywords]]:
            self.visit(expr)
        self._use(node.name, "store")

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in [*node.args.defaults, *[d for d in node.args.kw_defaults if d is not None]]:
            self.visit(expr)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.DictComp
                       | ast.GeneratorExp) -> None:
        self.visit(node.generators[0].iter)  # the one part evaluated in the enclosing scope

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension


def _imports(tree: ast.Module) -> dict[str, set[str]]:
    """For each name an import statement binds at module level, what it imports."""
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue  # ast.walk still enters them; their imports are local (filtered below)
        if isinstance(node, ast.Import):
            for alias in node.names:
                what = alias.name if alias.asname else alias.name.split(".")[0]
                found.setdefault(alias.asname or alias.name.split(".")[0], set()).add(what)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            for alias in node.names:
                found.setdefault(alias.asname or alias.name, set()).add(
                    f"{node.module}.{alias.name}")
    return found


def names_of(source: str) -> Names:
    """What a cell binds at module level and which globals it reads, at any depth.

    A cell that does not parse defines and reads nothing (it fails when run, in any mode).
    """
    try:
        python = _python(source)
        tree = ast.parse(python)
        table = symtable.symtable(python, "<cell>", "exec")
    except (SyntaxError, ValueError):
        return Names()
    found = Names()
    module_imports = _imports(tree)
    for sym in table.get_symbols():
        name = sym.get_name()
        if sym.is_assigned() or sym.is_imported() or sym.is_namespace():
            found.defines.add(name)
        if (sym.is_imported() and not sym.is_assigned() and not sym.is_namespace()
                and len(module_imports.get(name, ())) == 1):
            found.imports[name] = next(iter(module_imports[name]))
    first = _FirstUse()
    for stmt in tree.body:
        first.visit(stmt)
    found.reads = {name for name, what in first.first.items() if what == "load"}
    stack = list(table.get_children())
    while stack:
        scope = stack.pop()
        stack.extend(scope.get_children())
        for sym in scope.get_symbols():
            if sym.is_global() and sym.is_referenced():
                found.fn_reads.add(sym.get_name())
            if sym.is_declared_global() and sym.is_assigned():
                found.defines.add(sym.get_name())
    return found


@dataclass(frozen=True)
class Plan:
    """Which cells a fast run skips, by ``grade_id``; ``needed``: the instructor cells it runs
    although no test needs them, because code that runs may see what they bind."""

    skip: frozenset[str]
    needed: tuple[str, ...] = ()


@dataclass
class _Cell:
    index: int
    kind: str  # "skippable", "runs" (answers, setup and other instructor cells) or "test"
    names: Names
    grade_id: str | None = None


def _sees(cell: _Cell, reader: _Cell, name: str, runners: list[_Cell]) -> bool:
    """Whether ``reader`` (a cell that runs, or a test) may see the value ``cell`` binds to
    ``name``, given the cells that run (``runners``, tests included).

    The value lasts from ``cell`` to the next cell that runs and binds the name again. A
    module-level read (or any read of a test) sees it when it comes in that span. A function,
    lambda or class body of a cell that runs may be called whenever code runs after its
    definition: it sees the value when its own cell comes in that span, or when it was
    defined earlier and some cell runs in the span. A cell that binds the name again is
    taken to bind it before it calls anything (a cell that calls such a function first, then
    binds the name, is the one case this reading misses).
    """
    after = [r.index for r in runners
             if r.kind != "test" and r.index > cell.index and name in r.names.defines]
    until = min(after, default=float("inf"))
    if name in reader.names.fn_reads:  # a test's are among its reads (see plan)
        if cell.index < reader.index < until:
            return True
        if reader.index < cell.index and any(cell.index < r.index < until for r in runners):
            return True
    return cell.index < reader.index <= until and name in reader.names.reads


def _same_import(cell: _Cell, name: str, binders: list[_Cell]) -> bool:
    """``cell`` binds ``name`` by an import that cells which run already made: ``import
    graphviz`` again binds the same module, so skipping it changes nothing."""
    what = cell.names.imports.get(name)
    others = [b for b in binders if name in b.names.defines]
    return (what is not None and any(b.index < cell.index for b in others)
            and all(b.names.imports.get(name) == what for b in others))


def plan(submitted: NotebookNode, trusted: NotebookNode) -> Plan:
    """The cells of ``submitted`` a grade does not need, judged against the lab's ``trusted``
    (source) notebook.

    A skippable cell still runs when a cell that runs may see a name it binds: code in a
    function (or lambda, comprehension, class) of a cell that runs reads it, or a later cell
    that runs, or a later test, reads it at module level with no cell that runs binding it
    in between. The cells that run for this reason count as running in turn, until nothing
    changes, so a fast run binds every name a grade reads as a full run does.
    """
    from .nbgrader_ext import is_setup_cell, is_test_cell  # they import this module

    skippable = {notebooks.nbgrader_meta(c)["grade_id"]: c.source
                 for c in trusted.cells if is_skippable(c)}
    cells: list[_Cell] = []
    for index, cell in enumerate(submitted.cells):
        if cell.cell_type != "code":
            continue
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if grade_id in skippable:  # the trusted source, as nbgrader's OverwriteCells restores it
            cells.append(_Cell(index, "skippable", names_of(skippable[grade_id]), grade_id))
        else:
            cells.append(_Cell(index, "test" if is_test_cell(cell) else "runs",
                               names_of(cell.source), grade_id))
    # A test runs in the harness: the setup cells' names, and what tests bind, are its own;
    # its functions and lambdas run while the test does, so their reads are the test's reads.
    own = set().union(*[c.names.defines for c in cells if c.kind == "test"
                        or is_setup_cell(submitted.cells[c.index])])
    for cell in cells:
        if cell.kind == "test":
            cell.names.reads = (cell.names.reads | cell.names.fn_reads) - own
            cell.names.fn_reads = set()
    needed: list[_Cell] = []
    while True:
        binders = [c for c in cells if c.kind == "runs"] + needed
        runners = binders + [c for c in cells if c.kind == "test"]
        wanted = [c for c in cells if c.kind == "skippable" and c not in needed
                  and any(not _same_import(c, name, binders)
                          and any(_sees(c, r, name, runners) for r in runners)
                          for name in c.names.defines)]
        if not wanted:
            break
        needed.extend(wanted)
    candidates = {c.grade_id for c in cells if c.kind == "skippable"}
    return Plan(frozenset(candidates - {c.grade_id for c in needed}),
                tuple(c.grade_id for c in sorted(needed, key=lambda c: c.index)))


SKIPPED_NAME_NOTE = ("`{name}` is defined only by an instructor cell that fast grading does "
                     "not run ({cell}: it draws or prepares a figure); it is read where Python "
                     "cannot see it in advance (eval, exec). Grade with `course grade --full`")
_UNDEFINED = re.compile(r"name '(\w+)' is not defined")


def explain_missing_names(nb: NotebookNode, trusted: NotebookNode,
                          skipped: frozenset[str]) -> list[str]:
    """Say so under every error of ``nb`` that is a ``NameError`` for a name only a skipped
    cell defines (a student's code that reads it in a way :func:`plan` cannot see); returns
    the names, in order of appearance."""
    defined_by: dict[str, str] = {}
    for cell in trusted.cells:
        grade_id = notebooks.nbgrader_meta(cell).get("grade_id")
        if grade_id in skipped:
            for name in names_of(cell.source).defines:
                defined_by.setdefault(name, grade_id)
    found: list[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") != "error":
                continue
            text = f"{out.get('evalue', '')}\n" + "\n".join(out.get("traceback", []))
            names = [n for n in _UNDEFINED.findall(text) if n in defined_by]
            for name in dict.fromkeys(names):
                note = SKIPPED_NAME_NOTE.format(name=name, cell=defined_by[name])
                out["evalue"] = f"{out.get('evalue', '')} ({note})"
                out["traceback"] = [*out.get("traceback", []), note]
                if name not in found:
                    found.append(name)
    return found


def mark_skipped(cell: NotebookNode) -> None:
    """The graded copy of a skipped cell: the submitted outputs under one line that says so.

    Submitted error outputs go: an error under an instructor cell would read as the course's
    failure or the grader's (``autograder/instructor_cells.py``, ``worker.incidents``).
    """
    import nbformat

    note = nbformat.v4.new_output("stream", name="stdout", text=SKIPPED_NOTE)
    cell.outputs = [note, *[o for o in cell.get("outputs", [])
                            if o.get("output_type") != "error"]]
    cell.execution_count = None
