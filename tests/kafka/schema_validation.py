"""A Kafka producer (confluent-kafka) against a schema-validated topic of Sluice: each of
the given payloads (hex) is produced as one record's value on its own; prints, per payload,
the delivery error name (or null when it was acknowledged) as JSON.

Usage: schema_validation.py BOOTSTRAP TOPIC HEX [HEX ...]
"""
import json
import sys

from confluent_kafka import KafkaException, Producer

bootstrap, topic = sys.argv[1], sys.argv[2]
results = []
for payload in sys.argv[3:]:
    # One producer per record, no retries: a refused record is not retried into a batch
    # with the next one.
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                  "retries": 0, "linger.ms": 0})
    outcome = {}

    def done(err, _msg, outcome=outcome):
        outcome["error"] = None if err is None else err.name()

    try:
        p.produce(topic, value=bytes.fromhex(payload), on_delivery=done)
    except KafkaException as e:
        outcome["error"] = str(e)
    p.flush(30)
    results.append(outcome.get("error", "no delivery report"))
print(json.dumps(results))
