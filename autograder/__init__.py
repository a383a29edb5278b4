"""The `course` command: build, check and grade the labs."""
