"""Settings shared by the course's two JupyterLab sessions (loaded by student/ and instructor/).

`make lab` and `make formgrader` put one of those folders on JUPYTER_CONFIG_PATH; nothing here is
read by a plain `jupyter lab`, and your own Jupyter settings (~/.jupyter) are left alone.
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821  (injected by traitlets)

# Root is the usual user of a container or a teaching VM; Jupyter refuses to start as root unless
# told. The session listens on localhost only (Jupyter's default) and needs its token.
c.ServerApp.allow_root = True

# The environment JupyterLab runs from (the course's .venv, or the conda environment) comes first on
# PATH for kernels and terminals, so `course check` works in both. Jupyter starts terminals as a
# *login* shell, and a login shell's /etc/profile resets PATH (Debian does): so the terminal is an
# interactive, non-login bash whose start-up file reads your ~/.bashrc, then puts this bin/ first.
env_bin = os.path.dirname(sys.executable)
os.environ["COURSE_ENV_BIN"] = env_bin
if os.environ.get("PATH", "").split(os.pathsep)[0] != env_bin:
    os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")
rcfile = Path(__file__).resolve().parent / "terminal.bashrc"
c.ServerApp.terminado_settings = {"shell_command": ["bash", "--rcfile", str(rcfile), "-i"]}

# nbgrader's Validate button runs the notebook with nbgrader's Execute: its 30 s per cell fails a
# correct CAM-family cell on a loaded laptop. The grader's own limit (nbgrader_config.py).
c.Execute.timeout = 180
