"""The instructor's JupyterLab (`make formgrader`): the course root, with nbgrader's formgrader
(menu Nbgrader > Formgrader, or /formgrader) reading nbgrader_config.py and gradebook.db there.
"""

c = get_config()  # noqa: F821  (injected by traitlets)
load_subconfig("../common_config.py")  # noqa: F821

c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.formgrader": True,
    "nbgrader.server_extensions.validate_assignment": True,
    "nbgrader.server_extensions.assignment_list": True,
    "nbgrader.server_extensions.course_list": True,
}
