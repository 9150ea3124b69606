"""confluent-kafka's Schema Registry client and serializers against Sluice: the registry's
REST API (register, lookup, versions, compatibility, config) and Avro, JSON Schema and
Protobuf (with an imported .proto) records produced to Sluice's Kafka listener and read back
by a consumer with the matching deserializer. Prints a JSON summary.

Usage: schema_registry.py BOOTSTRAP REGISTRY_URL TOPIC_PREFIX [BASIC_USER_INFO]
"""
import json
import sys
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

bootstrap, registry_url, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
conf = {"url": registry_url}
if len(sys.argv) > 4:
    conf["basic.auth.user.info"] = sys.argv[4]
client = SchemaRegistryClient(conf)
out = {}

# --- the REST API through the client -------------------------------------------------------
ORDER_V1 = json.dumps({
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"}]})
ORDER_V2 = json.dumps({
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"},
               {"name": "note", "type": ["null", "string"], "default": None}]})
ORDER_BAD = json.dumps({
    "type": "record", "name": "Order", "namespace": "shop",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"},
               {"name": "currency", "type": "string"}]})
subject = f"{prefix}-orders-value"
id1 = client.register_schema(subject, Schema(ORDER_V1, "AVRO"))
out["id1_again"] = client.register_schema(subject, Schema(ORDER_V1, "AVRO")) == id1
out["same_id_other_subject"] = client.register_schema(f"{prefix}-copy-value", Schema(ORDER_V1, "AVRO")) == id1
out["compatible_v2"] = client.test_compatibility(subject, Schema(ORDER_V2, "AVRO"))
out["incompatible_bad"] = not client.test_compatibility(subject, Schema(ORDER_BAD, "AVRO"))
id2 = client.register_schema(subject, Schema(ORDER_V2, "AVRO"))
out["id2_new"] = id2 != id1
try:
    client.register_schema(subject, Schema(ORDER_BAD, "AVRO"))
    out["bad_refused"] = None
except SchemaRegistryError as e:
    out["bad_refused"] = {"status": e.http_status_code, "code": e.error_code}
looked = client.lookup_schema(subject, Schema(ORDER_V1, "AVRO"))
out["lookup_version"] = looked.version
out["versions"] = client.get_versions(subject)
latest = client.get_latest_version(subject)
out["latest"] = {"version": latest.version, "id": latest.schema_id}
out["by_id_type"] = client.get_schema(id1).schema_type
out["subjects_contain"] = subject in client.get_subjects()
client.set_compatibility(subject_name=subject, level="FULL")
out["compat_level"] = client.get_compatibility(subject)
try:
    client.get_version(subject, 99)
    out["missing_version"] = None
except SchemaRegistryError as e:
    out["missing_version"] = {"status": e.http_status_code, "code": e.error_code}


def roundtrip(topic, serializer, deserializer, values):
    """Produces `values` serialized, then reads them back deserialized."""
    p = Producer({"bootstrap.servers": bootstrap})
    for v in values:
        p.produce(topic, value=serializer(v, SerializationContext(topic, MessageField.VALUE)))
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    for _ in range(120):
        m = c.poll(0.5)
        if m is None or m.error():
            if len(got) == len(values):
                break
            continue
        got.append(deserializer(m.value(), SerializationContext(topic, MessageField.VALUE)))
        if len(got) == len(values):
            break
    c.close()
    return got


# --- Avro ----------------------------------------------------------------------------------
avro_topic = f"{prefix}-avro"
orders = [{"id": f"o-{i}", "amount": i * 1.5, "note": None if i % 2 else f"n{i}"} for i in range(5)]
got = roundtrip(avro_topic, AvroSerializer(client, ORDER_V2), AvroDeserializer(client), orders)
out["avro_equal"] = got == orders

# --- JSON Schema ---------------------------------------------------------------------------
PERSON = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Person", "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name"]})
people = [{"name": "Ann", "age": 41}, {"name": "Bo"}]
got = roundtrip(f"{prefix}-json", JSONSerializer(PERSON, client), JSONDeserializer(PERSON), people)
out["json_equal"] = got == people

# --- Protobuf with an imported .proto --------------------------------------------------------
pool = descriptor_pool.DescriptorPool()
address = descriptor_pb2.FileDescriptorProto(name="common/address.proto", package="common", syntax="proto3")
m = address.message_type.add(name="Address")
m.field.add(name="street", number=1, type=9, label=1)
m.field.add(name="city", number=2, type=9, label=1)
pool.Add(address)
order = descriptor_pb2.FileDescriptorProto(name="shop/order.proto", package="shop", syntax="proto3",
                                          dependency=["common/address.proto"])
m = order.message_type.add(name="Order")
m.field.add(name="id", number=1, type=9, label=1)
m.field.add(name="total_cents", number=2, type=3, label=1)
m.field.add(name="ship_to", number=3, type=11, label=1, type_name=".common.Address")
pool.Add(order)
Order = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
pb_topic = f"{prefix}-proto"
msgs = [Order(id=f"p-{i}", total_cents=100 * i, ship_to={"street": f"{i} Main St", "city": "Oslo"})
        for i in range(3)]
ser = ProtobufSerializer(Order, client, {"use.deprecated.format": False})
de = ProtobufDeserializer(Order, {"use.deprecated.format": False})
got = roundtrip(pb_topic, ser, de, msgs)
out["proto_equal"] = [g.SerializeToString() for g in got] == [x.SerializeToString() for x in msgs]
out["proto_import_subject"] = "common/address.proto" in client.get_subjects()
refs = client.get_latest_version(f"{pb_topic}-value").schema.references
out["proto_references"] = [r.name for r in refs]

print(json.dumps(out))
