import io, json, pathlib, sys
from confluent_kafka import Consumer
from fastavro import schemaless_reader
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form as canonical
schemas = {bytes.fromhex(fingerprint(canonical(s), "CRC-64-AVRO")): parse_schema(s) for s in
           (json.loads(p.read_text()) for p in pathlib.Path("schemas/avro").glob("*.avsc"))}
consumer = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "auto.offset.reset": "earliest"})
consumer.subscribe(["shop.users", "shop.orders", "shop.payments"])
while (message := consumer.poll(10)) is not None:  # ends after 10 quiet seconds
    value = message.value() or b""
    if not message.error() and value[:2] == b"\xc3\x01" and value[2:10] in schemas:
        print(message.topic(), json.dumps(schemaless_reader(io.BytesIO(value[10:]), schemas[value[2:10]], None), default=str))
