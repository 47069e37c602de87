//! `rdkafka-bench`: the same modes, options and result table as `tally bench`, with
//! librdkafka (the `rdkafka` crate) producing and consuming. Topic set-up uses Tally's admin
//! client; nothing measured goes through it.
//!
//!     cargo run --release -p tally-rdkafka-bench -- produce --count 1000000 --partitions 8

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tally_bench::payload::{now_us, sent_us, Payloads};
use tally_bench::progress::Progress;
use tally_bench::{prepare_topic, BenchOptions, Latencies, Mode, Pacer, Report};

#[derive(Parser)]
#[command(
    name = "rdkafka-bench",
    about = "Benchmark a Kafka-compatible broker with librdkafka",
    after_help = "Examples:
  rdkafka-bench produce --count 1000000 --message-size 100 --partitions 8
  rdkafka-bench end-to-end --duration-secs 20 --rate 50000 --json
  rdkafka-bench consume --topic tally-bench --count 1000000
  rdkafka-bench produce -X linger.ms=20 -X debug=msg"
)]
struct Cli {
    /// HOST:PORT of a broker.
    #[arg(long, default_value = "127.0.0.1:9092", env = "TALLY_BOOTSTRAP")]
    bootstrap: String,
    /// A librdkafka property for the producers and consumers, as KEY=VALUE (repeatable), set
    /// after the bench's own.
    #[arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_property)]
    property: Vec<(String, String)>,
    #[command(flatten)]
    options: BenchOptions,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

/// The `-X` properties, set once at start.
static PROPERTIES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

fn with_properties(config: &mut RdConfig) -> &mut RdConfig {
    for (k, v) in PROPERTIES.get().into_iter().flatten() {
        config.set(k, v);
    }
    config
}

/// Counts deliveries and takes each one's latency (the opaque is its send time).
#[derive(Default)]
struct Deliveries {
    acked: AtomicU64,
    errors: AtomicU64,
    latencies: Mutex<Latencies>,
    last_ack: Mutex<Option<Instant>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Instant>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<Instant>) {
        let now = Instant::now();
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                self.latencies
                    .lock()
                    .expect("lock")
                    .record_us((now - *sent).as_micros() as u64);
                *self.last_ack.lock().expect("lock") = Some(now);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn producer(bootstrap: &str, o: &BenchOptions) -> Result<ThreadedProducer<Deliveries>> {
    let mut config = RdConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", o.idempotent().to_string())
        .set("acks", o.acks.as_i16().to_string())
        .set("compression.type", o.compression.name())
        .set("linger.ms", o.linger_ms.to_string())
        .set("batch.size", o.batch_size.to_string())
        // Idempotence needs at most 5; keeping 5 without it too (librdkafka's default there
        // is 1,000,000) makes idempotence the only difference between the two runs.
        .set("max.in.flight.requests.per.connection", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    with_properties(&mut config);
    let context = Deliveries::default();
    let p: ThreadedProducer<Deliveries> = config
        .create_with_context(context)
        .context("cannot create the rdkafka producer")?;
    Ok(p)
}

struct Produced {
    acked: u64,
    errors: u64,
    latencies: Latencies,
    seconds: f64,
}

/// `--producers` threads, each with its own librdkafka producer.
fn run_producers(bootstrap: &str, o: &BenchOptions, done: Arc<AtomicU64>) -> Result<Produced> {
    let mut producers = Vec::new();
    for _ in 0..o.producers {
        producers.push(producer(bootstrap, o)?);
    }
    let start = Instant::now();
    let deadline = o.duration_secs.map(|s| start + Duration::from_secs(s));
    let threads: Vec<_> = producers
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            let o = o.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || -> Result<Arc<Deliveries>> {
                let payloads = Payloads::new(o.message_size);
                let pacer = Pacer::new(o.rate.map(|r| (r / o.producers as u64).max(1)));
                let limit = if o.duration_secs.is_some() {
                    u64::MAX
                } else {
                    o.share(index)
                };
                let mut n = 0u64;
                while n < limit {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    if let Some(wait) = pacer.delay(n) {
                        std::thread::sleep(wait);
                    }
                    let value = payloads.value(n);
                    let mut record: BaseRecord<'_, (), [u8], Box<Instant>> =
                        BaseRecord::with_opaque_to(&o.topic, Box::new(Instant::now()))
                            .payload(&value[..]);
                    loop {
                        match p.send(record) {
                            Ok(()) => break,
                            Err((
                                KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                                r,
                            )) => {
                                record = r;
                                std::thread::sleep(Duration::from_micros(200));
                            }
                            Err((e, _)) => bail!("send failed: {e}"),
                        }
                    }
                    n += 1;
                    if n.is_multiple_of(1024) {
                        done.store(
                            p.context().acked.load(Ordering::Relaxed) * o.producers as u64,
                            Ordering::Relaxed,
                        );
                    }
                }
                p.flush(Duration::from_secs(120))
                    .context("flush did not finish in 120 s")?;
                Ok(Arc::clone(p.context()))
            })
        })
        .collect();
    let mut out = Produced {
        acked: 0,
        errors: 0,
        latencies: Latencies::default(),
        seconds: 0.0,
    };
    let mut last = start;
    for t in threads {
        let d = t
            .join()
            .map_err(|_| anyhow::anyhow!("a producer thread panicked"))??;
        out.acked += d.acked.load(Ordering::Relaxed);
        out.errors += d.errors.load(Ordering::Relaxed);
        out.latencies.merge(&d.latencies.lock().expect("lock"));
        let last_ack = *d.last_ack.lock().expect("lock");
        if let Some(at) = last_ack {
            last = last.max(at);
        }
    }
    out.seconds = (last - start).as_secs_f64();
    Ok(out)
}

fn consumer(bootstrap: &str, o: &BenchOptions, offset: Offset) -> Result<BaseConsumer> {
    let mut config = RdConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tally-rdkafka-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let c: BaseConsumer = with_properties(&mut config)
        .create()
        .context("cannot create the rdkafka consumer")?;
    let mut list = TopicPartitionList::new();
    for p in 0..o.partitions {
        list.add_partition_offset(&o.topic, p, offset)?;
    }
    c.assign(&list)?;
    Ok(c)
}

const STALL: Duration = Duration::from_secs(30);

fn consume(bootstrap: &str, o: &BenchOptions, done: Arc<AtomicU64>) -> Result<(u64, f64)> {
    let c = consumer(bootstrap, o, Offset::Beginning)?;
    let start = Instant::now();
    let mut read = 0u64;
    let mut last_seen = Instant::now();
    while read < o.count {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => {
                read += 1;
                last_seen = Instant::now();
                if read.is_multiple_of(1024) {
                    done.store(read, Ordering::Relaxed);
                }
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None if last_seen.elapsed() > STALL => {
                bail!("read {read} of {} messages, then nothing for 30 s", o.count)
            }
            None => {}
        }
    }
    Ok((read, start.elapsed().as_secs_f64()))
}

fn end_to_end(bootstrap: &str, o: &BenchOptions, done: Arc<AtomicU64>) -> Result<Report> {
    let c = consumer(bootstrap, o, Offset::End)?;
    // Let the consumer learn its end offsets before anything is produced.
    let _ = c.poll(Duration::from_millis(500));
    let produced = Arc::new(AtomicU64::new(u64::MAX));
    let producer_thread = {
        let o = o.clone();
        let bootstrap = bootstrap.to_string();
        let produced = Arc::clone(&produced);
        std::thread::spawn(move || {
            let out = run_producers(&bootstrap, &o, Arc::new(AtomicU64::new(0)));
            produced.store(out.as_ref().map_or(0, |p| p.acked), Ordering::SeqCst);
            out
        })
    };
    let start = Instant::now();
    let mut latencies = Latencies::default();
    let mut received = 0u64;
    let mut last_seen = Instant::now();
    while received < produced.load(Ordering::SeqCst) {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let now = now_us();
                if let Some(sent) = m.payload().and_then(sent_us) {
                    latencies.record_us(now.saturating_sub(sent));
                }
                received += 1;
                last_seen = Instant::now();
                if received.is_multiple_of(1024) {
                    done.store(received, Ordering::Relaxed);
                }
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None if last_seen.elapsed() > STALL => {
                bail!("received {received} messages, then nothing for 30 s")
            }
            None => {}
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let produced = producer_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
    Ok(Report::new(
        "rdkafka",
        o,
        received,
        seconds,
        latencies.summary(),
        produced.errors,
    ))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = PROPERTIES.set(cli.property.clone());
    let o = cli.options.clone();
    o.validate()?;
    if o.transaction_messages.is_some() {
        anyhow::bail!(
            "--transaction-messages is measured with `tally bench` (Tally's client) only"
        );
    }
    let mut client = tally_client::ClientConfig::new(cli.bootstrap.clone());
    client.client_id = "rdkafka-bench-setup".into();
    let held = prepare_topic(&o, &client).await?;
    let done = Arc::new(AtomicU64::new(0));
    let hidden = o.no_progress || o.json;
    let label = match o.mode {
        Mode::Produce => "produce",
        Mode::Consume => "consume",
        Mode::EndToEnd => "end-to-end",
    };
    if o.mode == Mode::Consume && held < o.count {
        let mut fill = o.clone();
        fill.count = o.count - held;
        fill.rate = None;
        let bootstrap = cli.bootstrap.clone();
        let fill_done = Arc::new(AtomicU64::new(0));
        let progress = Progress::start("fill", fill.count, None, Arc::clone(&fill_done), hidden);
        tokio::task::spawn_blocking(move || run_producers(&bootstrap, &fill, fill_done)).await??;
        progress.finish();
    }
    let progress = Progress::start(label, o.count, o.duration_secs, Arc::clone(&done), hidden);
    let bootstrap = cli.bootstrap.clone();
    let work_options = o.clone();
    let report = tokio::task::spawn_blocking(move || -> Result<Report> {
        let o = work_options;
        match o.mode {
            Mode::Produce => {
                let p = run_producers(&bootstrap, &o, done)?;
                Ok(Report::new(
                    "rdkafka",
                    &o,
                    p.acked,
                    p.seconds,
                    p.latencies.summary(),
                    p.errors,
                ))
            }
            Mode::Consume => {
                let (read, seconds) = consume(&bootstrap, &o, done)?;
                Ok(Report::new("rdkafka", &o, read, seconds, None, 0))
            }
            Mode::EndToEnd => end_to_end(&bootstrap, &o, done),
        }
    })
    .await??;
    progress.finish();
    if o.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.table());
    }
    Ok(())
}
