"""confluent-kafka (librdkafka) against Sluice: an idempotent, lz4-compressing producer,
then two consumers of one group that split 6 partitions; one leaves and the other takes
over from the committed offsets. Prints a JSON summary. Usage: confluent_groups.py BOOTSTRAP TOPIC N"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
errors = []
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "compression.type": "lz4",
              "acks": "all", "linger.ms": 5})
for i in range(n):
    p.produce(topic, key=f"k{i}", value=json.dumps({"seq": i}),
              on_delivery=lambda e, m: errors.append(str(e)) if e else None)
p.flush(30)


def consumer(name):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "pair", "client.id": name,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 500})


a, b = consumer("a"), consumer("b")
a.subscribe([topic])
b.subscribe([topic])
seen = {"a": [], "b": []}
max_split = (0, 0)


def poll(c, name, limit):
    got = 0
    while got < limit:
        m = c.poll(0.05)
        if m is None:
            return
        if m.error():
            continue
        seen[name].append(json.loads(m.value())["seq"])
        c.commit(message=m, asynchronous=False)
        got += 1


deadline = time.time() + 60
while time.time() < deadline and len(seen["a"]) + len(seen["b"]) < n // 2:
    poll(a, "a", 20)
    poll(b, "b", 20)
    split = (len(a.assignment()), len(b.assignment()))
    if min(split) > min(max_split):
        max_split = split
b.close()  # leaves the group; a is assigned all partitions and resumes from b's commits
while time.time() < deadline and len(set(seen["a"]) | set(seen["b"])) < n:
    poll(a, "a", 100)
final_a = len(a.assignment())
a.close()
everything = seen["a"] + seen["b"]
print(json.dumps({"produce_errors": errors[:3], "split": max_split, "final_a": final_a,
                  "unique": len(set(everything)), "total": len(everything)}))
