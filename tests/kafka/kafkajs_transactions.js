// kafkajs 2.2 against Sluice: CreatePartitions through the admin client, a transactional
// producer (one committed, one aborted transaction), and a read_committed consumer that
// sees the committed records only. Prints a JSON summary.
// Usage: node kafkajs_transactions.js BOOTSTRAP   (kafkajs resolved from NODE_PATH)
const { Kafka, logLevel } = require("kafkajs");

const kafka = new Kafka({ clientId: "sluice-test", brokers: [process.argv[2]], logLevel: logLevel.NOTHING });
const topic = "kjs";

(async () => {
  const out = {};
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
  await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
  out.partitions = (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length;
  await admin.disconnect();

  const producer = kafka.producer({ transactionalId: "kjs-tx", maxInFlightRequests: 1, idempotent: true });
  await producer.connect();
  let tx = await producer.transaction();
  await tx.send({ topic, messages: Array.from({ length: 20 }, (_, i) => ({ key: `k${i}`, value: `committed-${i}` })) });
  await tx.commit();
  tx = await producer.transaction();
  await tx.send({ topic, messages: Array.from({ length: 10 }, (_, i) => ({ key: `a${i}`, value: `aborted-${i}` })) });
  await tx.abort();
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: "kjs-readers", readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  await consumer.run({ eachMessage: async ({ message }) => { seen.push(message.value.toString()); } });
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline && seen.length < 20) await new Promise((r) => setTimeout(r, 200));
  await new Promise((r) => setTimeout(r, 1500));
  await consumer.disconnect();
  out.committed = seen.filter((v) => v.startsWith("committed")).length;
  out.aborted = seen.filter((v) => v.startsWith("aborted")).length;
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
