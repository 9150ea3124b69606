"""confluent-kafka (librdkafka) transactions against Sluice. Prints a JSON summary.

Usage: confluent_transactions.py BOOTSTRAP TOPIC all   — the whole story below
       confluent_transactions.py BOOTSTRAP TOPIC open  — leave a transaction open and exit

`all`: commit, abort and commit again; read_committed and read_uncommitted consumers; a
transaction left open holds read_committed readers back until it commits; a zombie
producer is fenced by a new one with the same transactional.id; consume-transform-produce
with the consumed offsets committed in the transaction (send_offsets_to_transaction).
"""
import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap, topic, mode = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}


def producer(tid, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": tid, "linger.ms": 5,
            "transaction.timeout.ms": 60000}
    conf.update(extra)
    return Producer(conf)


def consume_all(isolation, topics, expect_at_least=0, timeout=20, group=None):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group or f"read-{isolation}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation})
    c.subscribe(topics)
    vals = []
    deadline = time.time() + timeout
    idle_since = None
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            if len(vals) >= expect_at_least:
                idle_since = idle_since or time.time()
                if time.time() - idle_since > 1.5:
                    break
            continue
        idle_since = None
        if m.error():
            continue
        vals.append(m.value().decode())
    c.close()
    return vals


if mode == "open":
    p = producer("left-open")
    p.init_transactions(30)
    p.begin_transaction()
    for i in range(20):
        p.produce(topic, key=f"o{i}", value=f"open-{i}")
    p.flush(30)
    print(json.dumps({"open": 20}), flush=True)
    os._exit(0)

# 1. commit, abort, commit
p = producer("tx-main")
p.init_transactions(30)
for label, n, commit in [("c1", 100, True), ("a1", 50, False), ("c2", 100, True)]:
    p.begin_transaction()
    for i in range(n):
        p.produce(topic, key=f"{label}-{i}", value=f"{label}-{i}")
    p.flush(30)
    if commit:
        p.commit_transaction(30)
    else:
        p.abort_transaction(30)

committed = consume_all("read_committed", [topic], 200)
uncommitted = consume_all("read_uncommitted", [topic], 250)
out["committed"] = len(committed)
out["committed_unique"] = len(set(committed))
out["committed_has_aborted"] = any(v.startswith("a1") for v in committed)
out["uncommitted"] = len(uncommitted)

# 2. an open transaction holds read_committed readers back
p.begin_transaction()
for i in range(30):
    p.produce(topic, key=f"h{i}", value=f"held-{i}")
p.flush(30)
before = consume_all("read_committed", [topic], 200, timeout=6)
out["while_open"] = sum(1 for v in before if v.startswith("held"))
p.commit_transaction(30)
after = consume_all("read_committed", [topic], 230)
out["after_commit"] = sum(1 for v in after if v.startswith("held"))

# 3. a zombie is fenced
zombie = producer("tx-zombie")
zombie.init_transactions(30)
zombie.begin_transaction()
for i in range(10):
    zombie.produce(topic, key=f"z{i}", value=f"zombie-{i}")
zombie.flush(30)
fresh = producer("tx-zombie")
fresh.init_transactions(30)  # bumps the epoch: the zombie's open transaction is aborted
fenced = None
try:
    zombie.produce(topic, key="z-late", value="zombie-late")
    zombie.flush(10)
    zombie.commit_transaction(10)
    fenced = False
except KafkaException as e:
    err = e.args[0]
    fenced = bool(err.fatal() or "fenced" in str(err).lower() or "epoch" in str(err).lower())
out["zombie_fenced"] = fenced
fresh.begin_transaction()
for i in range(10):
    fresh.produce(topic, key=f"f{i}", value=f"fresh-{i}")
fresh.flush(30)
fresh.commit_transaction(30)
final = consume_all("read_committed", [topic], 240)
out["zombie_visible"] = sum(1 for v in final if v.startswith("zombie"))
out["fresh_visible"] = sum(1 for v in final if v.startswith("fresh"))
out["final_committed"] = len(final)

# 4. consume-transform-produce, offsets in the transaction
dest = topic + ".upper"
group = "ctp"
c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "isolation.level": "read_committed"})
c.subscribe([topic])
t = producer("tx-ctp")
t.init_transactions(30)
moved = 0
deadline = time.time() + 30
idle = 0
while time.time() < deadline and idle < 8:
    msgs = c.consume(100, 0.5)
    msgs = [m for m in msgs if not m.error()]
    if not msgs:
        idle += 1
        continue
    idle = 0
    t.begin_transaction()
    for m in msgs:
        t.produce(dest, key=m.key(), value=m.value().upper())
    t.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
    t.commit_transaction(30)
    moved += len(msgs)
committed_offsets = c.committed(c.assignment(), 10)
c.close()
out["ctp_moved"] = moved
out["ctp_committed_offsets"] = sum(max(tp.offset, 0) for tp in committed_offsets)
out["ctp_out"] = len(consume_all("read_committed", [dest], moved))
print(json.dumps(out), flush=True)
