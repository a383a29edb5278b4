"""nbgrader configuration for the course root (this folder).

Read by every ``nbgrader`` command run here (formgrader, plain ``nbgrader autograde``). ``course
grade`` sets the grading values itself (autograder/worker.py), so that a course folder without
this file grades the same; a test keeps the two in step. Comments say *why* each value differs
from nbgrader's default.
"""

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "cnn-interpretability"
c.CourseDirectory.root = "."
c.CourseDirectory.db_url = "sqlite:///gradebook.db"

# Students fill functions; the stub keeps the notebook importable and fails loudly.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Notebooks are short, but a CPU grading machine under load is slow: nbgrader's 30 s default
# per cell failed whole tasks on a busy 2-core machine. Whole notebooks stay within ~1 minute.
c.Execute.timeout = 180
c.Execute.interrupt_on_timeout = True

# nbgrader scores a test cell 0 when *anything* reaches stderr, a harmless torch UserWarning or a
# progress bar included. Failures are errors, never stderr, so no stderr output decides a grade.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"[\s\S]*"

# Keep graded copies small even when a student prints a lot.
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 50
