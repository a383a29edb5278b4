"""A student's JupyterLab (`make lab`): the labs in release/, and nbgrader's Validate button only.

nbgrader installs its instructor tools into every JupyterLab of the environment. Here the
formgrader (which would create a gradebook.db in the student's folder) and the assignment and
course lists of nbgrader's exchange (this course hands out release/ instead) are switched off, in
this session only: the server extensions below and, in labconfig/page_config.json, the matching
JupyterLab plugins (with nbgrader's menu, which only opens them, and Create Assignment).
"""

c = get_config()  # noqa: F821  (injected by traitlets)
load_subconfig("../common_config.py")  # noqa: F821

c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.assignment_list": False,
    "nbgrader.server_extensions.course_list": False,
    "nbgrader.server_extensions.validate_assignment": True,
}
