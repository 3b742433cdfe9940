#!/usr/bin/env python3
"""Validates artflow's JSON output against the committed schemas (test-time only).

    validate.py record|run|annotation|page FILE...

record, run, annotation: JSON Lines (every line); page: one JSON document per
file.  Schemas: docs/record.schema.json (record; $defs.run for run manifests)
and docs/annotation.schema.json (annotation; $defs.page for IIIF pages).
Needs the jsonschema package (Debian's python3-jsonschema, in INSTALL); when
the python3 on PATH lacks it, Debian's /usr/bin/python3 is tried.
Exit 0 when everything validates, 1 with one line per problem.
"""
import json
import os
import sys

try:
    import jsonschema
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    sys.exit("validate.py: the jsonschema package is missing (apt-get install python3-jsonschema)")

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs")
kind, files = sys.argv[1], sys.argv[2:]
name = "record.schema.json" if kind in ("record", "run") else "annotation.schema.json"
schema = json.load(open(os.path.join(DOCS, name)))
if kind in ("run", "page"):
    schema = dict(schema, **{"$ref": "#/$defs/" + kind})
    schema.pop("required", None), schema.pop("properties", None), schema.pop("allOf", None)
    schema.pop("additionalProperties", None), schema.pop("type", None)
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema, format_checker=cls.FORMAT_CHECKER)
bad = n = 0
for f in files:
    docs = [open(f).read()] if kind == "page" else open(f, encoding="utf-8").read().splitlines()
    for i, text in enumerate(docs, 1):
        n += 1
        for e in v.iter_errors(json.loads(text)):
            bad += 1
            print("%s:%d: %s at %s" % (f, i, e.message, "/".join(map(str, e.absolute_path))))
print("validate.py: %d %s document(s), %d problem(s)" % (n, kind, bad))
sys.exit(1 if bad or n == 0 else 0)
