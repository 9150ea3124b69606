"""confluent-kafka (librdkafka) against a Sluice with SASL/PLAIN identities (and TLS when the
base config says so). Prints a JSON summary of what each identity could and could not do.
Usage: confluent_secure.py BOOTSTRAP BASE_CONFIG_JSON PRODUCER_TOKEN CONSUMER_TOKEN"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap, base, producer_token, consumer_token = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]


def conf(user, password, **extra):
    c = {"bootstrap.servers": bootstrap, "sasl.mechanisms": "PLAIN",
         "sasl.username": user, "sasl.password": password}
    c.update(base)
    c.update(extra)
    return c


def produce(user, password, topic, n):
    errors, delivered, client_errors = [], [], []
    p = Producer(conf(user, password, **{"message.timeout.ms": 4000, "acks": "all",
                                          "error_cb": lambda e: client_errors.append(str(e))}))
    for i in range(n):
        p.produce(topic, key=f"k{i}", value=json.dumps({"seq": i}),
                  on_delivery=lambda e, m: errors.append(str(e)) if e else delivered.append(m.offset()))
    p.flush(10)
    return {"delivered": len(delivered), "errors": sorted(set(errors)), "client_errors": sorted(set(client_errors))}


def consume(user, password, topic, want, group):
    c = Consumer(conf(user, password, **{"group.id": group, "auto.offset.reset": "earliest",
                                          "session.timeout.ms": 6000}))
    c.subscribe([topic])
    got, errors = [], []
    deadline = time.time() + 15
    while time.time() < deadline and len(got) < want:
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            errors.append(str(m.error()))
            if "authorization" in str(m.error()).lower():
                break
            continue
        got.append(m.value())
    c.close()
    return {"consumed": len(got), "errors": sorted(set(errors))}


def commit(user, password, topic):
    c = Consumer(conf(user, password, **{"group.id": "committers"}))
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        return "ok"
    except KafkaException as e:
        return str(e)
    finally:
        c.close()


print(json.dumps({
    "consumer_commit_allowed": commit("reader", consumer_token, "user_events"),
    "consumer_commit_denied": commit("reader", consumer_token, "secret_events"),
    "producer_allowed": produce("ingest", producer_token, "user_events", 5),
    "producer_denied_topic": produce("ingest", producer_token, "secret_events", 1),
    "wrong_password": produce("ingest", "not-the-token", "user_events", 1),
    "consumer_allowed": consume("reader", consumer_token, "user_events", 5, "readers"),
    "producer_as_consumer": consume("ingest", producer_token, "user_events", 1, "sneaky"),
}))
