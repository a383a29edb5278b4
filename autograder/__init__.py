"""The `course` command: build, check and grade the labs."""

import sys

# Modules no process of the course needs, kept from loading. jsonschema, which nbformat
# imports, compiles rfc3987-syntax's IRI grammar on import whenever that package is installed
# (jupyter_events' jsonschema[format-nongpl] brings it): 0.8 s of every grading worker's and
# every nbgrader command's start. Nothing the course runs validates the "iri" format
# (nbformat's schema has none), so jsonschema is left without that one check.
UNLOADED_MODULES = ("rfc3987_syntax",)
for _name in UNLOADED_MODULES:
    sys.modules.setdefault(_name, None)  # type: ignore[assignment]
