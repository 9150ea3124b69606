// @kafkajs/confluent-schema-registry 3.9 against Sluice's schema registry: registers Avro,
// JSON Schema and Protobuf schemas, encodes values (Confluent framing), sends them with
// kafkajs to Sluice's Kafka listener, reads them back and decodes them. Prints a JSON summary.
// Usage: node kafkajs_schema_registry.js BOOTSTRAP REGISTRY_URL   (modules from NODE_PATH)
const { Kafka, logLevel } = require("kafkajs");
const { SchemaRegistry, SchemaType } = require("@kafkajs/confluent-schema-registry");

const [bootstrap, registryUrl] = process.argv.slice(2);
const kafka = new Kafka({ clientId: "sluice-sr", brokers: [bootstrap], logLevel: logLevel.NOTHING });
const registry = new SchemaRegistry({ host: registryUrl });

(async () => {
  const out = {};
  const avro = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify({
      type: "record", name: "Click", namespace: "web",
      fields: [{ name: "user", type: "string" }, { name: "n", type: "int" }] }) },
    { subject: "kjs-clicks-value" });
  const again = await registry.register(
    { type: SchemaType.AVRO, schema: JSON.stringify({
      type: "record", name: "Click", namespace: "web",
      fields: [{ name: "user", type: "string" }, { name: "n", type: "int" }] }) },
    { subject: "kjs-clicks-value" });
  out.same_id = avro.id === again.id;
  out.latest_id = (await registry.getLatestSchemaId("kjs-clicks-value")) === avro.id;
  const json = await registry.register(
    { type: SchemaType.JSON, schema: JSON.stringify({
      type: "object", properties: { name: { type: "string" } }, required: ["name"] }) },
    { subject: "kjs-people-value" });
  const proto = await registry.register(
    { type: SchemaType.PROTOBUF, schema: 'syntax = "proto3";\npackage shop;\nmessage Item {\n  string sku = 1;\n  int32 qty = 2;\n}\n' },
    { subject: "kjs-items-value" });

  const values = [
    [avro.id, { user: "ann", n: 3 }],
    [json.id, { name: "Bo" }],
    [proto.id, { sku: "A-1", qty: 2 }],
  ];
  const encoded = [];
  for (const [id, v] of values) encoded.push(await registry.encode(id, v));
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic: "kjs-sr", messages: encoded.map((value) => ({ value })) });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: "kjs-sr-g" });
  await consumer.connect();
  await consumer.subscribe({ topic: "kjs-sr", fromBeginning: true });
  const decoded = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("timed out")), 30000);
    consumer.run({
      eachMessage: async ({ message }) => {
        decoded.push(await registry.decode(message.value));
        if (decoded.length === values.length) { clearTimeout(timer); resolve(); }
      },
    });
  });
  await consumer.disconnect();
  out.decoded = decoded.map((d) => JSON.parse(JSON.stringify(d)));
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
