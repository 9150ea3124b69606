"""A consumer-group member for the groups API test (tests/it/kafka.rs), with kafka-python or
confluent-kafka. Usage: group_member.py CLIENT BOOTSTRAP TOPIC GROUP K

  K >= 0: consumes exactly K records (committing each), prints {"consumed": K}, then stays
          in the group, paused, until its stdin closes; then leaves and prints {"left": true}.
  K < 0:  reads everything there is (until 3 s pass without a record once it has its
          partitions), commits, leaves, and
          prints {"read": [[partition, offset], ...]}.

CLIENT is kafka-python or confluent; the client id is "<CLIENT>-member"."""
import json
import sys
import threading
import time

client, bootstrap, topic, group, k = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
closed = threading.Event()


def watch_stdin():
    sys.stdin.read()
    closed.set()


def say(v):
    print(json.dumps(v), flush=True)


if client == "kafka-python":
    from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id="kafka-python-member",
                      auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=1,
                      session_timeout_ms=10000, heartbeat_interval_ms=500)

    def next_record(timeout):
        got = c.poll(timeout_ms=int(timeout * 1000), max_records=1)
        for records in got.values():
            for r in records:
                return r
        return None

    def commit(r):
        c.commit({TopicPartition(r.topic, r.partition): OffsetAndMetadata(r.offset + 1, "", -1)})

    def pause():
        c.pause(*c.assignment())

    def idle():
        c.poll(timeout_ms=200)

    def place(r):
        return [r.partition, r.offset]

    def assigned():
        return bool(c.assignment())
else:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "client.id": "confluent-member",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    c.subscribe([topic])

    def next_record(timeout):
        m = c.poll(timeout)
        if m is None or m.error():
            return None
        return m

    def commit(m):
        c.commit(message=m, asynchronous=False)

    def pause():
        c.pause(c.assignment())

    def idle():
        c.poll(0.2)

    def place(m):
        return [m.partition(), m.offset()]

    def assigned():
        return bool(c.assignment())

if k >= 0:
    got = 0
    deadline = time.time() + 60
    while got < k and time.time() < deadline:
        r = next_record(0.5)
        if r is not None:
            commit(r)
            got += 1
    pause()
    say({"consumed": got})
    threading.Thread(target=watch_stdin, daemon=True).start()
    while not closed.is_set():
        idle()
    c.close()
    say({"left": True})
else:
    read = []
    # The idle window starts once the group has given this member its partitions.
    first = None
    deadline = time.time() + 30
    while time.time() < deadline:
        first = next_record(0.2)
        if first is not None or assigned():
            break
    if first is not None:
        read.append(place(first))
        commit(first)
    last = time.time()
    while time.time() - last < 3:
        r = next_record(0.5)
        if r is not None:
            read.append(place(r))
            commit(r)
            last = time.time()
    c.close()
    say({"read": sorted(read)})
