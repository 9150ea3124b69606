"""confluent-kafka (librdkafka) against a Sluice with SASL/PLAIN identities: for each
identity and topic, whether it could fetch the topic's records (assigned partition 0, no
group) and produce one record. Prints one JSON object: {user: {topic: {"fetched": n,
"fetch_error": str, "produced": bool, "produce_error": str}}}.
Usage: owned_topics.py BOOTSTRAP USERS_JSON({name: token}) TOPICS_JSON([name])"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

bootstrap, users, topics = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])


def conf(user, token, **extra):
    c = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
         "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": token}
    c.update(extra)
    return c


def fetch(user, token, topic):
    c = Consumer(conf(user, token, **{"group.id": f"owned-{user}", "enable.auto.commit": False,
                                       "auto.offset.reset": "earliest", "enable.partition.eof": True}))
    c.assign([TopicPartition(topic, 0, 0)])
    got, errors = 0, []
    deadline = time.time() + 8
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            code = m.error().code()
            if code == KafkaError._PARTITION_EOF:
                break
            errors.append(str(m.error()))
            if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                break
            continue  # e.g. no group rights (an operator): assigned fetches go on
        got += 1
    c.close()
    return got, "; ".join(errors)


def produce(user, token, topic):
    errors, ok = [], []
    p = Producer(conf(user, token, **{"message.timeout.ms": 4000, "retries": 0}))
    p.produce(topic, key=b"k", value=b"intruder",
              on_delivery=lambda e, m: errors.append(str(e)) if e else ok.append(m.offset()))
    p.flush(8)
    return bool(ok), "; ".join(errors)


out = {}
for user, token in users.items():
    out[user] = {}
    for topic in topics:
        n, fe = fetch(user, token, topic)
        ok, pe = produce(user, token, topic)
        out[user][topic] = {"fetched": n, "fetch_error": fe, "produced": ok, "produce_error": pe}
print(json.dumps(out))
