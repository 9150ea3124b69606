"""kafka-python subcommands for the consumer-group tests (run by tests/it/kafka.rs):
  produce BOOTSTRAP TOPIC N        N user-activity events (value_serializer=json)
  produce-lines BOOTSTRAP TOPIC N  N "User: john, Password: secretI" lines
  group-read BOOTSTRAP TOPIC GROUP N
      reads with KafkaConsumer(group_id=GROUP) until N records arrive (or 20 s pass),
      commits, and prints each value on its own line"""
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer

cmd, bootstrap = sys.argv[1], sys.argv[2]
if cmd == "produce":
    topic, n = sys.argv[3], int(sys.argv[4])
    p = KafkaProducer(bootstrap_servers=bootstrap, value_serializer=lambda v: json.dumps(v).encode())
    for i in range(n):
        p.send(topic, {"user_id": f"u-{i % 9}", "action": "view", "seq": i})
    p.flush()
    p.close()
elif cmd == "produce-lines":
    topic, n = sys.argv[3], int(sys.argv[4])
    p = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(n):
        p.send(topic, f"User: john, Password: secret{i}".encode())
    p.flush()
    p.close()
elif cmd == "group-read":
    topic, group, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    got = []
    deadline = time.time() + 20
    while len(got) < n and time.time() < deadline:
        for msg in c:
            got.append(msg.value.decode())
            if len(got) >= n:
                break
    c.commit()
    # Anything beyond N would be a duplicate or a stray: look a little longer.
    extra = c.poll(timeout_ms=1000)
    for records in extra.values():
        got.extend(r.value.decode() for r in records)
    c.close()
    for v in got:
        print(v)
elif cmd == "admin":
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    a = KafkaAdminClient(bootstrap_servers=bootstrap)
    a.create_topics([NewTopic("admin_made", num_partitions=4, replication_factor=1,
                              topic_configs={"retention.ms": "3600000", "cleanup.policy": "compact"})])
    try:
        a.create_topics([NewTopic("admin_made", num_partitions=1, replication_factor=1)])
        print("duplicate create accepted")
    except Exception as e:  # TopicAlreadyExistsError
        print("duplicate refused:", type(e).__name__)
    res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "admin_made")])
    print("configs:", repr(res)[:3000])
    a.delete_topics(["admin_made"])
    print("deleted")
    a.close()
else:
    sys.exit(f"unknown command {cmd}")
