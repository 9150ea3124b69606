"""confluent-kafka (librdkafka) admin API and group behaviour against Sluice. Prints a JSON
summary. Usage: confluent_admin.py BOOTSTRAP

CreatePartitions, IncrementalAlterConfigs (+ DescribeConfigs), DeleteRecords, DescribeCluster,
DeleteGroups; two consumers started together land in one generation (the initial rebalance
delay); a static member (group.instance.id) that restarts gets its partitions back without
a rebalance of the others.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewPartitions, NewTopic)

bootstrap = sys.argv[1]
out = {}
admin = AdminClient({"bootstrap.servers": bootstrap})


def wait(futures):
    return {k: f.result(30) for k, f in futures.items()}


wait(admin.create_topics([NewTopic("adm", num_partitions=2)]))
wait(admin.create_partitions([NewPartitions("adm", 4)]))
md = admin.list_topics("adm", timeout=10)
out["partitions_after"] = len(md.topics["adm"].partitions)
try:
    wait(admin.create_partitions([NewPartitions("adm", 3)]))
    out["shrink_refused"] = False
except Exception as e:  # noqa: BLE001 - any client error means refused
    out["shrink_refused"] = "INVALID_PARTITIONS" in str(e) or "grow" in str(e)

res = ConfigResource(ConfigResource.Type.TOPIC, "adm",
                     incremental_configs=[ConfigEntry("retention.ms", "3600000",
                                                      incremental_operation=AlterConfigOpType.SET)])
wait(admin.incremental_alter_configs([res]))
described = wait(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "adm")]))
configs = list(described.values())[0]
out["retention_ms"] = configs["retention.ms"].value

p = Producer({"bootstrap.servers": bootstrap})
for i in range(100):
    p.produce("adm", value=f"v{i}", partition=0)
p.flush(30)
deleted = admin.delete_records([TopicPartition("adm", 0, 40)])
low = list(deleted.values())[0].result(30)
out["low_watermark"] = low.low_watermark
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "adm-reader", "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.assign([TopicPartition("adm", 0, 0)])
first = None
deadline = time.time() + 15
while time.time() < deadline and first is None:
    m = c.poll(0.5)
    if m is not None and not m.error():
        first = m.offset()
c.close()
out["first_offset_after_delete"] = first

cluster = admin.describe_cluster().result(30)
out["cluster_nodes"] = len(cluster.nodes)

# Group: two members starting together, one generation.
events = {}


def member(name, instance=None):
    conf = {"bootstrap.servers": bootstrap, "group.id": "together", "client.id": name,
            "auto.offset.reset": "earliest", "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500}
    if instance:
        conf["group.instance.id"] = instance
    c = Consumer(conf)
    log = events.setdefault(name, [])
    c.subscribe(["adm"], on_assign=lambda _c, ps: log.append(("assign", len(ps))),
                on_revoke=lambda _c, ps: log.append(("revoke", len(ps))))
    return c


a, b = member("a", "inst-a"), member("b", "inst-b")
deadline = time.time() + 30
while time.time() < deadline and (not a.assignment() or not b.assignment()):
    a.poll(0.1)
    b.poll(0.1)
out["together_split"] = [len(a.assignment()), len(b.assignment())]
# One generation: each got one assignment and nothing was taken back.
out["together_events"] = [events["a"], events["b"]]
before_b = sorted(tp.partition for tp in b.assignment())
# Static member a restarts (close without leaving: static members do not send LeaveGroup).
a.close()
a = member("a2", "inst-a")
deadline = time.time() + 30
while time.time() < deadline and not a.assignment():
    a.poll(0.1)
    b.poll(0.1)
for _ in range(20):
    a.poll(0.1)
    b.poll(0.1)
out["static_back"] = len(a.assignment())
out["b_unchanged"] = sorted(tp.partition for tp in b.assignment()) == before_b
out["b_events"] = events["b"]
a.close()
b.close()

# DeleteGroups: an empty group goes.
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "to-delete", "enable.auto.commit": False})
c.commit(offsets=[TopicPartition("adm", 0, 50)], asynchronous=False)
c.close()
res = admin.delete_consumer_groups(["to-delete"])
wait(res)
out["group_deleted"] = True
print(json.dumps(out), flush=True)
