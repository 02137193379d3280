"""Prints, as one JSON object, fastavro's Parsing Canonical Form and CRC-64-AVRO fingerprint (hex,
as single-object encoding writes its bytes) of every .avsc file in a folder: an implementation
other than ours, for schemas/tests/fastavro.rs to compare with.

Usage: python fingerprints.py schemas/avro
"""
import json
import pathlib
import sys

from fastavro.schema import fingerprint, to_parsing_canonical_form

found = {}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.avsc")):
    canonical = to_parsing_canonical_form(json.loads(path.read_text()))
    found[path.name] = {"canonical": canonical, "fingerprint": fingerprint(canonical, "CRC-64-AVRO")}
print(json.dumps(found))
