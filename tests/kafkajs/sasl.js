// kafkajs over SASL_SSL: an idempotent producer writes 100 messages, then a group consumer
// reads the topic back. Prints one JSON line: {"read": [...]}. With TOPIC "-" it only tries
// to write one message and prints {"connected": bool, "error": name}.
// Usage: node sasl.js HOST:PORT TOPIC CA_FILE MECHANISM USER PASSWORD
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [broker, topic, ca, mechanism, username, password] = process.argv.slice(2);
const kafka = new Kafka({
  clientId: 'tally-kafkajs-sasl',
  brokers: [broker],
  logLevel: logLevel.NOTHING,
  ssl: { ca: [fs.readFileSync(ca, 'utf-8')] },
  sasl: { mechanism, username, password },
  retry: { retries: topic === '-' ? 0 : 5 },
});

async function tryOnce() {
  const producer = kafka.producer();
  try {
    await producer.connect();
    await producer.send({ topic: 'sasl-kafkajs', messages: [{ value: 'stranger' }] });
    return { connected: true };
  } catch (e) {
    return { connected: false, error: e.name, message: e.message };
  } finally {
    await producer.disconnect().catch(() => {});
  }
}

async function main() {
  if (topic === '-') {
    console.log(JSON.stringify(await tryOnce()));
    return;
  }
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
  await producer.connect();
  for (let i = 0; i < 100; i += 10) {
    const messages = [];
    for (let j = i; j < i + 10; j++) messages.push({ value: `js${j}` });
    await producer.send({ topic, acks: -1, messages });
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: 'sasl-kafkajs-readers' });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const read = [];
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 20000);
    consumer.run({
      eachMessage: async ({ message }) => {
        read.push(message.value.toString());
        if (read.length >= 100) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ read }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
