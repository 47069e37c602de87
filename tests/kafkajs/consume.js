// kafkajs's consumer reads a whole topic from the beginning (every partition, every codec) and
// prints one JSON line: [[partition, offset, key, value], ...]. It stops once it has `expected`
// records and nothing more came for 1.5 s, or after 30 s.
// Usage: node consume.js HOST:PORT TOPIC EXPECTED
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');
const SnappyCodec = require('kafkajs-snappy');
const lz4 = require('lz4js');
const fzstd = require('fzstd');

// kafkajs ships gzip only; these read the other codecs in pure JavaScript (no native build).
CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec;
// lz4js's own frame reader mishandles frames with block checksums (what the lz4 crate
// writes by default), so the frame is walked here and only its blocks go to lz4js.
function lz4Frame(src) {
  if (src.readUInt32LE(0) !== 0x184d2204) throw new Error('not an LZ4 frame');
  const flg = src[4];
  const blockMax = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20][(src[5] >> 4) & 7];
  let at = 7 + (flg & 0x08 ? 8 : 0) + (flg & 0x01 ? 4 : 0);
  const blocks = [];
  for (;;) {
    const word = src.readUInt32LE(at);
    at += 4;
    if (word === 0) break;
    const size = word & 0x7fffffff;
    blocks.push([at, size, (word & 0x80000000) !== 0]);
    at += size + (flg & 0x10 ? 4 : 0);
  }
  const dst = Buffer.alloc(blocks.length * blockMax);
  let out = 0;
  for (const [start, size, raw] of blocks) {
    if (raw) {
      src.copy(dst, out, start, start + size);
      out += size;
    } else {
      out = lz4.decompressBlock(src, dst, start, size, out);
    }
  }
  return dst.subarray(0, out);
}

CompressionCodecs[CompressionTypes.LZ4] = () => ({
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer));
  },
  async decompress(buffer) {
    return Buffer.from(lz4Frame(buffer));
  },
});
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  async compress() {
    throw new Error('zstd compression is not needed by these tests');
  },
  async decompress(buffer) {
    return Buffer.from(fzstd.decompress(buffer));
  },
});

const [broker, topic, expectedArg] = process.argv.slice(2);
const expected = Number(expectedArg);
const kafka = new Kafka({ clientId: 'tally-kafkajs-reader', brokers: [broker], logLevel: logLevel.NOTHING });

async function main() {
  const consumer = kafka.consumer({ groupId: `kafkajs-reader-${Date.now()}` });
  // A record kafkajs cannot decode crashes the consumer: fail at once instead of retrying.
  consumer.on(consumer.events.CRASH, (e) => {
    console.error(`kafkajs consumer crashed: ${e.payload.error}`);
    process.exit(2);
  });
  setTimeout(() => {
    console.error('kafkajs consumer did not finish within 60 s');
    process.exit(3);
  }, 60000).unref();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const read = [];
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, 30000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        read.push([
          partition,
          Number(message.offset),
          message.key === null ? null : message.key.toString(),
          message.value === null ? null : message.value.toString(),
        ]);
      },
    });
    const check = setInterval(() => {
      if (read.length >= expected) {
        clearInterval(check);
        setTimeout(() => { clearTimeout(timer); resolve(); }, 1500);
      }
    }, 100);
  });
  await consumer.disconnect();
  console.log(JSON.stringify(read));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
