"""nbgrader configuration for the course root (this folder).

Read by every ``nbgrader`` command run here and by the formgrader. ``course
grade`` sets the grading values itself (autograder/worker.py), so that a course folder without
this file grades the same; a test keeps the two in step. Comments say *why* each value differs
from nbgrader's default.
"""

from autograder.nbgrader_ext import (
    feedback_preprocessors,
    refuse_plain_autograde,
    use_collection_time,
)

c = get_config()  # noqa: F821  (injected by traitlets when nbgrader loads this file)

# nbgrader's own autograde (the formgrader's Autograde button, `nbgrader autograde`) would run
# the hidden tests in the student's kernel, unsandboxed: it refuses, before touching anything,
# and says to use `course grade`.
refuse_plain_autograde()
# A submission's time is its collection time, as `course grade` records it (never the student's
# own timestamp.txt); otherwise the formgrader lists graded submissions as needing autograding.
use_collection_time()

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

# Feedback, however it is made (the formgrader's "Generate Feedback" button, `nbgrader
# generate_feedback`, `course grade`): each test's name, description and failure message, never
# its code (nbgrader's own feedback shows hidden tests), never a marking scheme, no active HTML.
c.GenerateFeedback.preprocessors = feedback_preprocessors()

# `nbgrader export` writes its own columns; `course grade` owns grades.csv and `course export`
# final_grades.csv, so nbgrader's goes to a file of its own and clobbers neither.
c.CsvExportPlugin.to = "nbgrader_grades.csv"
