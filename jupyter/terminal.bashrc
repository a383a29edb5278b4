# Start-up file of the terminals of `make lab` and `make formgrader` (see common_config.py):
# your own ~/.bashrc, then the course's environment first on PATH (`course check` works).
[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
[ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"
[ -n "$COURSE_ENV_BIN" ] && export PATH="$COURSE_ENV_BIN:$PATH"
