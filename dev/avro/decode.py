"""Decodes Shop's events with fastavro, finding each writer's schema by the fingerprint its
message carries and nothing else: the way a consumer in another language reads them.

Reads kcat's output on stdin, in the binary-safe format
    kcat -C -e -q -t TOPIC -f '%t %p %o %K %S\n%k%s\n'
and prints one JSON line per message: topic, partition, offset, key, and either the event (its
schema's name, the schema file, its fields) or why it could not be decoded.

Usage: kcat … | python decode.py schemas/avro
"""
import datetime
import io
import json
import pathlib
import sys
import uuid

from fastavro import schemaless_reader
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form


def schemas_by_fingerprint(folder):
    known = {}
    for path in sorted(pathlib.Path(folder).glob("*.avsc")):
        schema = json.loads(path.read_text())
        key = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        known[key] = (path.name, schema["name"], parse_schema(schema))
    return known


def plain(value):
    """fastavro's logical types as JSON: uuids as text, timestamps as epoch milliseconds."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def decode(payload, known):
    if payload[:2] != b"\xc3\x01" or len(payload) < 10:
        return {"error": "not single-object encoded"}
    found = known.get(payload[2:10])
    if found is None:
        return {"error": "unknown fingerprint " + payload[2:10].hex()}
    file, name, schema = found
    fields = schemaless_reader(io.BytesIO(payload[10:]), schema, None)
    return {"event": name, "schema": file, "fields": plain(fields)}


def main():
    known = schemas_by_fingerprint(sys.argv[1])
    stream = sys.stdin.buffer
    while header := stream.readline():
        topic, partition, offset, key_length, payload_length = header.decode().split()
        key = stream.read(max(int(key_length), 0))
        payload = stream.read(max(int(payload_length), 0))
        stream.read(1)  # the newline after each message
        message = {"topic": topic, "partition": int(partition), "offset": int(offset),
                   "key": key.decode("utf-8", "replace")}
        message.update(decode(payload, known))
        print(json.dumps(message), flush=True)


if __name__ == "__main__":
    main()
