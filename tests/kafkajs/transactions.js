// kafkajs's transactional producer against Tally: one transaction committed and one aborted
// across two partitions, then a read_committed consumer (kafkajs reads committed by default)
// reads the topic back. Prints one JSON line: what was committed, what was read.
// Usage: node transactions.js HOST:PORT TOPIC
const { Kafka, logLevel } = require('kafkajs');

const [broker, topic] = process.argv.slice(2);
const kafka = new Kafka({ clientId: 'tally-kafkajs', brokers: [broker], logLevel: logLevel.NOTHING });

async function main() {
  const producer = kafka.producer({
    transactionalId: 'kafkajs-txn',
    maxInFlightRequests: 1,
    idempotent: true,
  });
  await producer.connect();
  const committed = [];
  for (const [round, commit] of [[0, true], [1, false], [2, true]]) {
    const txn = await producer.transaction();
    const messages = [0, 1].map((p) => ({ partition: p, value: `r${round}-p${p}` }));
    await txn.send({ topic, messages });
    if (commit) {
      await txn.commit();
      committed.push(...messages.map((m) => m.value));
    } else {
      await txn.abort();
    }
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: 'kafkajs-txn-check', readUncommitted: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const read = [];
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 15000);
    consumer.run({
      eachMessage: async ({ message }) => {
        read.push(message.value.toString());
        if (read.length >= committed.length + 1) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
    // Settle: wait a little after the expected count for anything that should not be there.
    const check = setInterval(() => {
      if (read.length >= committed.length) {
        clearInterval(check);
        setTimeout(() => { clearTimeout(timer); resolve(); }, 1500);
      }
    }, 100);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ committed: committed.sort(), read: read.sort() }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
