"""librdkafka static membership (KIP-345), as librdkafka's 0102 do_test_fenced_member_classic
tries it: consumer A joins with a group.instance.id, consumer B joins with the same id; A
must be told (a fatal FENCED_INSTANCE_ID) within 10 s, and B gets the partitions.
Usage: static_fencing.py BOOTSTRAP TOPIC GROUP. Prints one JSON object."""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError

bootstrap, topic, group = sys.argv[1], sys.argv[2], sys.argv[3]


def consumer(name):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": name,
                     "group.instance.id": "instance-1", "session.timeout.ms": 30000,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False})


def assigned_within(c, secs):
    deadline = time.time() + secs
    while time.time() < deadline:
        c.poll(0.2)
        if c.assignment():
            return True
    return False


a = consumer("a")
a.subscribe([topic])
a_assigned = assigned_within(a, 30)
b = consumer("b")
b.subscribe([topic])
fenced, fatal, waited = None, False, 0.0
start = time.time()
while time.time() - start < 20 and fenced is None:
    b.poll(0.1)
    m = a.poll(0.1)
    if m is not None and m.error():
        e = m.error()
        if e.fatal() or e.code() == KafkaError._FATAL or "fenced" in str(e).lower():
            fenced, fatal, waited = str(e), e.fatal() or e.code() == KafkaError._FATAL, time.time() - start
b_assigned = assigned_within(b, 30)
print(json.dumps({"a_assigned": a_assigned, "fenced": fenced, "fatal": fatal,
                  "seconds": round(waited, 2), "b_assigned": b_assigned}))
b.close()
