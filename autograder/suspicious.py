"""Name, for the instructor, submitted code that reaches into the machinery grading relies on.

Scores never depend on this: tests run in the grader's process (:mod:`autograder.harness`), so
an input transformer or a patched ``run_cell`` changes nothing a test sees. But a submission that
tries is worth a look, so the grade table flags it for review. Only the student's own code is
read (answer cells and cells the student added); instructor and test cells are the course's.
The scan is static (Python's ``ast``), runs in the grader and never executes the code.
"""

from __future__ import annotations

import ast
import warnings

from nbformat import NotebookNode

from . import notebooks

# attribute or name -> what it is, in the words the problem column uses
ATTRIBUTES = {
    "input_transformers_cleanup": "IPython input transformers",
    "input_transformers_post": "IPython input transformers",
    "input_splitter": "IPython input transformers",
    "ast_transformers": "IPython AST transformers",
    "events": "IPython event hooks",
    "set_custom_exc": "a custom exception handler",
    "custom_exceptions": "a custom exception handler",
    "run_cell": "the shell's run_cell",
    "run_cell_async": "the shell's run_cell",
    "run_code": "the shell's run_code",
    "run_ast_nodes": "the shell's run_code",
    "showtraceback": "the shell's traceback display",
    "do_execute": "the kernel's execute handler",
    "shell_handlers": "the kernel's message handlers",
    "comm_manager": "the kernel's comms (the grader's channel)",
    "history_manager": "the input history",
    "excepthook": "sys.excepthook",
    "settrace": "a trace function",
    "setprofile": "a profile function",
    "_getframe": "stack frames of other code",
    "get_referrers": "the garbage collector's object lists",
    "get_objects": "the garbage collector's object lists",
}
NAMES = {
    "get_ipython": "the IPython shell",
    "In": "the input history", "Out": "the output history", "_ih": "the input history",
    "_oh": "the output history", "_i": "the input history", "_ii": "the input history",
    "_iii": "the input history",
}
MODULES = {
    "IPython": "IPython internals", "ipykernel": "the kernel's internals",
    "jupyter_client": "Jupyter messaging", "comm": "the kernel's comms (the grader's channel)",
    "zmq": "Jupyter messaging", "ctypes": "ctypes", "signal": "signal handlers",
    "builtins": "the builtins",
}
ALLOWED_MODULES = ("IPython.display",)  # display(), Image(): ordinary notebook use
MAX_SCANNED_CHARS = 1_000_000  # a longer cell is not parsed (it is graded all the same)
# Magic lines IPython turns into get_ipython() calls that are harmless.
_HARMLESS_MAGIC = ("%matplotlib", "%time", "%timeit", "%config InlineBackend", "%precision")


def _student_cells(nb: NotebookNode) -> list[tuple[int, str]]:
    out = []
    for index, cell in enumerate(nb.cells):
        meta = notebooks.nbgrader_meta(cell)
        if cell.get("cell_type") != "code" or not isinstance(cell.get("source"), str):
            continue
        if meta and not meta.get("solution"):
            continue  # an instructor or test cell: restored from the course's copy
        out.append((index, cell.source))
    return out


def _python(source: str) -> str:
    lines = [ln for ln in source.splitlines()
             if not ln.lstrip().startswith(_HARMLESS_MAGIC)]
    text = "\n".join(lines)
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(text)
    except Exception:  # noqa: BLE001 - fall back to the raw text
        return text


def scan_source(source: str) -> set[str]:
    """What ``source`` (one cell's code) touches, as short descriptions (empty: nothing)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(_python(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ATTRIBUTES:
            found.add(ATTRIBUTES[node.attr])
        elif isinstance(node, ast.Name) and node.id in NAMES:
            found.add(NAMES[node.id])
        elif isinstance(node, ast.Import):
            found.update(MODULES[a.name.split(".")[0]] for a in node.names
                         if a.name.split(".")[0] in MODULES and a.name not in ALLOWED_MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in MODULES and node.module not in ALLOWED_MODULES:
                found.add(MODULES[root])
        elif isinstance(node, ast.Attribute) and node.attr == "modules" and isinstance(
                node.value, ast.Name) and node.value.id == "sys":
            found.add("sys.modules")
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            found.add("the builtins")
    return found


def scan_notebook(nb: NotebookNode, name: str) -> list[str]:
    """One problem-column line if the student's code in ``nb`` touches grading machinery."""
    found: set[str] = set()
    for _, source in _student_cells(nb):
        if len(source) <= MAX_SCANNED_CHARS:
            found |= scan_source(source)
    if not found:
        return []
    return [f"{name}: FLAGGED FOR REVIEW, uses {', '.join(sorted(found))}"]
