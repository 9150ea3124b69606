"""kafka-python against Sluice: a producer with a value_serializer, then a consumer with
explicitly assigned partitions reads everything back; then the records of HTTP_TOPIC (made
over HTTP by the Rust test that runs this script) are read and printed as JSON lines for it
to compare byte for byte. Usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC N HTTP_TOPIC"""
import json
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = KafkaProducer(
    bootstrap_servers=bootstrap,
    value_serializer=lambda v: json.dumps(v).encode(),
    key_serializer=lambda k: k.encode(),
    linger_ms=5,
)
futures = [
    producer.send(topic, key=f"user-{i % 7}", value={"user_id": f"user-{i % 7}", "seq": i, "action": "login"})
    for i in range(n)
]
producer.flush()
offsets = [f.get(timeout=10) for f in futures]
producer.close()

consumer = KafkaConsumer(
    bootstrap_servers=bootstrap,
    value_deserializer=lambda v: json.loads(v),
    consumer_timeout_ms=5000,
    enable_auto_commit=False,
)
partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
consumer.assign(partitions)
consumer.seek_to_beginning()
seen = {}
for msg in consumer:
    seen[msg.value["seq"]] = (msg.partition, msg.offset, msg.key.decode())
    if len(seen) == n:
        break
consumer.close()
missing = [i for i in range(n) if i not in seen]
assert not missing, f"missing {missing[:10]}"
for i, md in enumerate(offsets):
    assert seen[i][:2] == (md.partition, md.offset), (i, seen[i], md)
print(f"kafka-python: {n} produced and consumed")

http_topic = sys.argv[4]
consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000, enable_auto_commit=False)
parts = [TopicPartition(http_topic, p) for p in consumer.partitions_for_topic(http_topic)]
consumer.assign(parts)
consumer.seek_to_beginning()
for msg in consumer:
    print(json.dumps({"partition": msg.partition, "offset": msg.offset,
                      "key": msg.key.hex() if msg.key is not None else None, "value": msg.value.hex(),
                      "headers": [[k, v.hex()] for k, v in msg.headers]}))
consumer.close()
