// A stand-in for the broker's console endpoints, for working on console.html without a broker.
//
//   node fixture_server.mjs <port> [--empty]
//
// Serves crates/tally-broker/src/console/console.html at `/` and an SSE stream at `/api/events`
// that emits one `overview` event a second. The overview evolves like a small live broker:
// two topics, a few producers whose duplicates grow (retries the broker absorbed), one of them
// in an open transaction, and one consumer group that lags. With --empty it reports a broker
// with no topics and no groups, to look at the empty states. Listens on 127.0.0.1 only and
// exits by itself after 120 s.
//
// It also documents the shape of an overview event: see `overview()` below.

import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const port = Number(process.argv[2]);
const empty = process.argv.includes('--empty');
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node fixture_server.mjs <port> [--empty]');
  process.exit(2);
}
const htmlPath = fileURLToPath(new URL('../../crates/tally-broker/src/console/console.html', import.meta.url));

const started = Date.now();
const BYTES_PER_MESSAGE = 180;
const SEGMENT_BYTES = 1 << 20;

// Mutable state, advanced once a second by tick(); every client sees the same broker.
const partitions = [
  { topic: 'orders', partition: 0, log_start_offset: 0, end: 1200, messages_in: 1200, dups: 0, weight: 5,
    producers: [{ producer_id: 1000, producer_epoch: 0, dup_every: 4 }, { producer_id: 1001, producer_epoch: 2, dup_every: 0 }] },
  { topic: 'orders', partition: 1, log_start_offset: 0, end: 950, messages_in: 950, dups: 0, weight: 4,
    producers: [{ producer_id: 1000, producer_epoch: 0, dup_every: 7 }] },
  // A partition nobody has produced to since the broker started: shows the empty producer state.
  { topic: 'orders', partition: 2, log_start_offset: 0, end: 0, messages_in: 0, dups: 0, weight: 0, producers: [] },
  { topic: 'payments.events', partition: 0, log_start_offset: 20000, end: 48210, messages_in: 28210, dups: 0, weight: 2,
    // Ids above 2^31: the console must not truncate them. This one holds a transaction open.
    producers: [{ producer_id: 4294967301, producer_epoch: 3, dup_every: 11, txn_from: 48000 }] },
];
for (const p of partitions) {
  for (const q of p.producers) Object.assign(q, { last_sequence: -1, last_offset: -1, last_timestamp: -1, dups: 0 });
}
const totals = { out_of_order: 0, fenced: 1 };
let ticks = 0;

function tick() {
  ticks++;
  const now = Date.now();
  // Load rises and falls so the chart has a shape.
  const load = 60 + 45 * Math.sin(ticks / 9) + 20 * Math.sin(ticks / 2.3);
  for (const p of partitions) {
    if (!p.weight) continue;
    p.producers.forEach((q, i) => {
      const n = Math.max(1, Math.round((load * p.weight) / 10 / p.producers.length) + i);
      q.last_sequence += n;
      q.last_offset = p.end + n - 1;
      q.last_timestamp = now - 150 - i * 1300;
      p.end += n;
      p.messages_in += n;
      // A retry the broker recognised: same producer, epoch and sequence, so it was not appended.
      if (q.dup_every && ticks % q.dup_every === 0) {
        const d = 1 + (ticks % 3);
        q.dups += d;
        p.dups += d;
      }
    });
  }
  if (ticks % 37 === 0) totals.out_of_order++;
}

function overview() {
  const now = Date.now();
  if (empty) {
    return {
      time_ms: now,
      broker: { node_id: 0, version: '0.1.0', listeners: ['127.0.0.1:9092'], data_dir: '/var/lib/tally', uptime_ms: now - started },
      totals: { messages_in: 0, bytes_in: 0, duplicates_absorbed: 0, out_of_order: 0, fenced: 0 },
      topics: [],
      groups: [],
    };
  }
  const topics = [];
  for (const p of partitions) {
    let t = topics.find((x) => x.name === p.topic);
    if (!t) topics.push((t = { name: p.topic, partitions: [] }));
    const size = (p.end - p.log_start_offset) * BYTES_PER_MESSAGE;
    t.partitions.push({
      partition: p.partition,
      log_start_offset: p.log_start_offset,
      log_end_offset: p.end,
      high_watermark: p.end,
      size_bytes: size,
      segments: 1 + Math.floor(size / SEGMENT_BYTES),
      messages_in: p.messages_in,
      duplicates_absorbed: p.dups,
      producers: p.producers.filter((q) => q.last_offset >= 0).map((q) => ({
        producer_id: q.producer_id,
        producer_epoch: q.producer_epoch,
        last_sequence: q.last_sequence,
        last_offset: q.last_offset,
        last_timestamp: q.last_timestamp,
        duplicates_absorbed: q.dups,
        txn_start_offset: q.txn_from ?? -1,
      })),
    });
  }
  const sum = (k) => partitions.reduce((s, p) => s + p[k], 0);
  const end = (topic, partition) => partitions.find((p) => p.topic === topic && p.partition === partition).end;
  // The group commits a little behind the log end, so it always shows some lag.
  const committed = (topic, partition, behind) => {
    const e = end(topic, partition);
    const c = Math.max(0, e - behind);
    return { topic, partition, committed_offset: c, log_end_offset: e, lag: e - c };
  };
  return {
    time_ms: now,
    broker: { node_id: 0, version: '0.1.0', listeners: ['127.0.0.1:9092', '[::1]:9092'], data_dir: '/var/lib/tally', uptime_ms: now - started + 7_380_000 },
    totals: {
      messages_in: sum('messages_in'),
      bytes_in: sum('messages_in') * BYTES_PER_MESSAGE,
      duplicates_absorbed: sum('dups'),
      out_of_order: totals.out_of_order,
      fenced: totals.fenced,
    },
    topics,
    groups: [{
      group_id: 'billing',
      state: 'Stable',
      protocol_type: 'consumer',
      protocol: 'range',
      generation: 2,
      members: [
        { member_id: 'rdkafka-1f3c9a52-6b1e-4f0e-9d55-2a9c2e4d7b10', client_id: 'billing-worker-1', host: '/127.0.0.1',
          assignment: [{ topic: 'orders', partitions: [0, 1] }] },
        // A client id with markup in it: the console must show it as text.
        { member_id: 'rdkafka-8d20e7c4-0a4b-4c61-b6f3-5e1f0c9a33de', client_id: 'billing-worker-2 <b>&co</b>', host: '/127.0.0.1',
          assignment: [{ topic: 'orders', partitions: [2] }, { topic: 'payments.events', partitions: [0] }] },
      ],
      offsets: [
        committed('orders', 0, 40 + (ticks % 25)),
        committed('orders', 1, 12),
        committed('orders', 2, 0),
        committed('payments.events', 0, 300 + ticks * 3),
      ],
    }],
  };
}

const clients = new Set();
const server = createServer((req, res) => {
  const path = new URL(req.url, 'http://localhost').pathname;
  if (path === '/') {
    // Read on every request so edits to console.html show on reload.
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(readFileSync(htmlPath));
  } else if (path === '/api/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
    // The latest event, not a fresh snapshot: its time_ms stays on the one-second grid, so
    // the rates the console computes from successive events are not skewed by a short interval.
    res.write(latestEvent);
    clients.add(res);
    req.on('close', () => clients.delete(res));
  } else {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  }
});

const event = () => `event: overview\ndata: ${JSON.stringify(overview())}\n\n`;
let latestEvent = event();
setInterval(() => {
  tick();
  latestEvent = event();
  for (const res of clients) res.write(latestEvent);
}, 1000);
setTimeout(() => process.exit(0), 120_000);

server.listen(port, '127.0.0.1', () => console.log(`fixture console on http://127.0.0.1:${port}/`));
