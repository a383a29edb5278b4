"""nbgrader preprocessors that close the failures plain nbgrader has in a batch.

- :class:`RobustExecute`: a kernel that dies (``os._exit``, a segfault, the memory cap) no longer
  loses the notebook: the cells that ran keep their outputs and scores, the rest fail with
  "KernelDied", and grading goes on. With ``sandbox_mode`` set, the kernel runs in the sandbox of
  :mod:`autograder.sandbox` and whatever a cell leaves running is killed after it.
- :class:`LimitOutputBytes`: caps each cell's output in *bytes* (nbgrader's LimitOutput counts
  lines, so a 10 MB single-line print passes it).
- :class:`HideTestCode`: for feedback, test cells show their description, name and failure
  message, never their code or a traceback quoting it (nbgrader issue 917).
"""

from __future__ import annotations

from typing import Any

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from traitlets import Integer, Unicode

from .sandbox import NO_SANDBOX, SandboxCells, SandboxKernelManager

KERNEL_DIED = "KernelDied"
# Defined by autograder.kernel_startup; absent (a no-op) when a kernel runs without it.
GUARD_CALL = "__import__('builtins').__dict__.get('__course_guard__', lambda: None)()\n"


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"{ename}: {evalue}"])


class RobustExecute(SandboxCells, Execute):
    """nbgrader's Execute, but a dead kernel fails only the cells it did not finish."""

    sandbox_mode = Unicode(NO_SANDBOX, help="root, user (see autograder.sandbox) or none").tag(
        config=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # nbgrader's Execute sets kernel_manager_class in its constructor, over any config.
        if self.sandbox_mode != NO_SANDBOX:
            self.kernel_manager_class = SandboxKernelManager

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int):
        """Run each test cell after ``__course_guard__()`` (see autograder.kernel_startup)."""
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            return super().preprocess_cell(cell, resources, index)
        source = cell.source
        cell.source = GUARD_CALL + source
        try:
            return super().preprocess_cell(cell, resources, index)
        finally:
            cell.source = source

    def on_cell_executed(self, **kwargs: Any) -> None:
        super().on_cell_executed(**kwargs)
        self._completed.add(kwargs["cell_index"])

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None):
        self._completed: set[int] = set()
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:
            self.log.warning("The kernel died; cells not run are marked as failed")
            # Every code cell that got no reply (the one running when the kernel died and all
            # after it) fails; cells that finished keep their outputs and so their scores.
            for index, cell in enumerate(nb.cells):
                if (cell.cell_type == "code" and cell.source.strip()
                        and index not in self._completed):
                    cell.outputs = [o for o in cell.get("outputs", [])
                                    if o.get("output_type") == "stream"]
                    cell.outputs.append(_error(
                        KERNEL_DIED, "the kernel died (crash, os._exit, memory or CPU-time cap) "
                        "before this cell finished; earlier cells keep their results"))
            return nb, resources


class LimitOutputBytes(NbGraderPreprocessor):
    """Truncate every cell's text and data outputs to ``max_bytes`` in total."""

    max_bytes = Integer(100_000, help="maximum bytes of output per cell").tag(config=True)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, cell_index: int):
        if cell.cell_type != "code":
            return cell, resources
        budget = self.max_bytes
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text = out.text
                if len(text.encode()) > budget:
                    text = text.encode()[:max(budget, 0)].decode(errors="ignore")
                    text += f"\n... output truncated to {self.max_bytes} bytes ...\n"
                    out.text = text
                budget -= len(out.text.encode())
            elif "data" in out:
                size = sum(len(str(v)) for v in out.data.values())
                if size > budget:
                    out = NotebookNode(output_type="stream", name="stdout",
                                       text=f"... output of {size} bytes removed ...\n")
                budget -= min(size, max(budget, 0))
            kept.append(out)
        cell.outputs = kept
        return cell, resources


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
