// A kafkajs 2.2 consumer-group member for the groups API test (tests/it/kafka.rs): consumes
// exactly K records (committing each), prints {"consumed": K}, then stays in the group,
// paused, until its stdin closes; then leaves and prints {"left": true}. Client id
// "kafkajs-member". Usage: node kafkajs_group_member.js BOOTSTRAP TOPIC GROUP K
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, group, kArg] = process.argv.slice(2);
const k = Number(kArg);
const kafka = new Kafka({ clientId: "kafkajs-member", brokers: [bootstrap], logLevel: logLevel.NOTHING });
const say = (v) => process.stdout.write(JSON.stringify(v) + "\n");

(async () => {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let got = 0;
  let reached;
  const done = new Promise((resolve) => (reached = resolve));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic: t, partition, message }) => {
      if (got >= k) return;
      await consumer.commitOffsets([{ topic: t, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      got += 1;
      if (got === k) {
        consumer.pause([{ topic }]);
        reached();
      }
    },
  });
  if (k === 0) reached();
  await Promise.race([done, new Promise((r) => setTimeout(r, 60000))]);
  say({ consumed: got });
  process.stdin.resume();
  await new Promise((r) => process.stdin.on("end", r));
  await consumer.disconnect();
  say({ left: true });
  process.exit(0);
})().catch((e) => {
  say({ error: String(e) });
  process.exit(1);
});
