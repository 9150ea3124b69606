"""confluent-kafka (librdkafka) producing to Sluice until the data disk is full: acks=all,
no retries, so each message reports either where it was stored or the broker's error.
Prints one JSON object: {"delivered": [[partition, offset, value], ...], "errors": [...]}.
Usage: disk_full.py BOOTSTRAP TOPIC PREFIX COUNT SIZE"""
import json
import sys

from confluent_kafka import Producer

bootstrap, topic, prefix, count, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
delivered, errors = [], []


def report(err, msg):
    if err:
        errors.append(err.name())
    else:
        delivered.append([msg.partition(), msg.offset(), msg.value()[:21].decode()])


p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0,
              "enable.idempotence": False, "linger.ms": 5, "message.timeout.ms": 10000})
for i in range(count):
    value = json.dumps({"id": f"{prefix}-{i:08d}", "pad": "x" * max(size - 40, 0)}, separators=(",", ":"))
    p.produce(topic, key=f"k{i}", value=value, on_delivery=report)
    p.poll(0)
    if errors:
        break
p.flush(20)
print(json.dumps({"delivered": delivered, "errors": sorted(set(errors))}))
