//! The bench on Tally's own client.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tally_client::{
    ClientConfig, Compression, Consumer, ConsumerConfig, DeliveryFuture, Offset, Producer,
    ProducerConfig, ProducerRecord,
};
use tokio::sync::mpsc;

use crate::error::BenchError;
use crate::latency::Latencies;
use crate::options::{BenchOptions, CompressionArg, Mode};
use crate::pacer::Pacer;
use crate::payload::{now_us, sent_us, Payloads};
use crate::progress::Progress;
use crate::report::Report;
use crate::topic::prepare_topic;

/// A consumer that sees nothing new for this long ends the run with an error.
const STALL: Duration = Duration::from_secs(30);

pub async fn run_tally(options: &BenchOptions, client: ClientConfig) -> Result<Report, BenchError> {
    options.validate()?;
    let held = prepare_topic(options, &client).await?;
    match options.mode {
        Mode::Produce => {
            let done = Arc::new(AtomicU64::new(0));
            let progress = progress("produce", options, &done);
            let outcome = run_producers(options, &client, done).await?;
            progress.finish();
            Ok(Report::new(
                "tally",
                options,
                outcome.acked,
                outcome.seconds,
                outcome.latencies.summary(),
                outcome.errors,
            ))
        }
        Mode::Consume => {
            if held < options.count {
                let mut fill = options.clone();
                fill.mode = Mode::Produce;
                fill.count = options.count - held;
                fill.rate = None;
                let done = Arc::new(AtomicU64::new(0));
                let progress = progress("fill", &fill, &done);
                run_producers(&fill, &client, done).await?;
                progress.finish();
            }
            consume(options, &client).await
        }
        Mode::EndToEnd => end_to_end(options, &client).await,
    }
}

fn progress(label: &str, options: &BenchOptions, done: &Arc<AtomicU64>) -> Progress {
    Progress::start(
        label,
        options.count,
        options.duration_secs,
        Arc::clone(done),
        options.no_progress || options.json,
    )
}

fn producer_config(options: &BenchOptions, client: &ClientConfig, index: usize) -> ProducerConfig {
    let mut config = ProducerConfig::new(String::new());
    if options.transaction_messages.is_some() {
        config.transactional_id = Some(format!("tally-bench-{}-{index}", std::process::id()));
    }
    config.client = client.clone();
    config.client.request_timeout_ms = options.request_timeout_ms;
    config.enable_idempotence = options.idempotent();
    config.acks = options.acks.as_i16();
    config.linger_ms = options.linger_ms;
    config.batch_size = options.batch_size;
    config.max_request_size = config.max_request_size.max(options.batch_size + 1024);
    config.buffer_memory = config.buffer_memory.max(4 * config.max_request_size);
    config.compression = match options.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => Compression::Gzip,
        CompressionArg::Snappy => Compression::Snappy,
        CompressionArg::Lz4 => Compression::Lz4,
        CompressionArg::Zstd => Compression::Zstd,
    };
    config
}

struct ProduceOutcome {
    acked: u64,
    errors: u64,
    latencies: Latencies,
    /// From the first send to the last acknowledgement.
    seconds: f64,
}

/// Runs `--producers` producers to the count or the duration; `done` counts acknowledged
/// messages as they come.
async fn run_producers(
    options: &BenchOptions,
    client: &ClientConfig,
    done: Arc<AtomicU64>,
) -> Result<ProduceOutcome, BenchError> {
    let mut producers = Vec::with_capacity(options.producers);
    for _ in 0..options.producers {
        let index = producers.len();
        producers.push(Producer::new(producer_config(options, client, index)).await?);
    }
    let start = Instant::now();
    let deadline = options
        .duration_secs
        .map(|s| start + Duration::from_secs(s));
    let mut tasks = Vec::new();
    for (index, producer) in producers.into_iter().enumerate() {
        let options = options.clone();
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            produce_one(&options, producer, index, deadline, done).await
        }));
    }
    let mut outcome = ProduceOutcome {
        acked: 0,
        errors: 0,
        latencies: Latencies::default(),
        seconds: 0.0,
    };
    let mut last_ack = start;
    for task in tasks {
        let (acked, errors, latencies, last) = task
            .await
            .map_err(|e| BenchError::Other(format!("a producer task failed: {e}")))??;
        outcome.acked += acked;
        outcome.errors += errors;
        outcome.latencies.merge(&latencies);
        last_ack = last_ack.max(last);
    }
    outcome.seconds = (last_ack - start).as_secs_f64();
    Ok(outcome)
}

type Sent = (Instant, DeliveryFuture);

/// One producer: sends (paced), while a second task awaits the deliveries.
///
/// The awaiter takes them in send order. A broker answers the requests of one connection in
/// order, and the producer seals batches in the order their records were sent, so with a
/// single broker each delivery is settled no later than the next one: the instant the awaiter
/// sees it is its acknowledgement time (within a scheduling delay), at the cost of a
/// channel slot rather than a task per message.
async fn produce_one(
    options: &BenchOptions,
    producer: Producer,
    index: usize,
    deadline: Option<Instant>,
    done: Arc<AtomicU64>,
) -> Result<(u64, u64, Latencies, Instant), BenchError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Sent>();
    let awaiter = tokio::spawn(async move {
        let mut latencies = Latencies::default();
        let (mut acked, mut errors, mut reported) = (0u64, 0u64, 0u64);
        let mut last = Instant::now();
        let mut buffer = Vec::with_capacity(1024);
        while rx.recv_many(&mut buffer, 1024).await > 0 {
            for (t0, delivery) in buffer.drain(..) {
                let result = delivery.await;
                let now = Instant::now();
                match result {
                    Ok(_) => {
                        acked += 1;
                        latencies.record_us((now - t0).as_micros() as u64);
                    }
                    Err(_) => errors += 1,
                }
                last = now;
            }
            done.fetch_add(acked - reported, Ordering::Relaxed);
            reported = acked;
        }
        (acked, errors, latencies, last)
    });
    let payloads = Payloads::new(options.message_size);
    // Keys unique across runs on the same topic, too.
    let run_nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let pacer = Pacer::new(options.rate.map(|r| (r / options.producers as u64).max(1)));
    let limit = if options.duration_secs.is_some() {
        u64::MAX
    } else {
        options.share(index)
    };
    let mut n = 0u64;
    let per_txn = options.transaction_messages;
    while n < limit {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if per_txn.is_some_and(|k| n.is_multiple_of(k)) {
            if n > 0 {
                producer
                    .commit_transaction()
                    .await
                    .map_err(|e| BenchError::Other(e.to_string()))?;
            }
            producer
                .begin_transaction()
                .map_err(|e| BenchError::Other(e.to_string()))?;
        }
        if let Some(wait) = pacer.delay(n) {
            tokio::time::sleep(wait).await;
        }
        let mut record = ProducerRecord::new(options.topic.clone(), payloads.value(n));
        if options.unique_keys {
            record = record.with_key(format!("{run_nonce:016x}-{index}-{n}"));
        }
        let t0 = Instant::now();
        let delivery = producer.send(record).await?;
        if tx.send((t0, delivery)).is_err() {
            break;
        }
        n += 1;
    }
    if per_txn.is_some() && n > 0 {
        producer
            .commit_transaction()
            .await
            .map_err(|e| BenchError::Other(e.to_string()))?;
    }
    drop(tx);
    let result = awaiter
        .await
        .map_err(|e| BenchError::Other(format!("the delivery task failed: {e}")))?;
    producer.close().await;
    Ok(result)
}

fn consumer_config(client: &ClientConfig) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(String::new());
    config.client = client.clone();
    config
}

async fn consume(options: &BenchOptions, client: &ClientConfig) -> Result<Report, BenchError> {
    let mut consumer = Consumer::new(consumer_config(client)).await?;
    consumer
        .assign_topic(&options.topic, Offset::Earliest)
        .await?;
    let done = Arc::new(AtomicU64::new(0));
    let progress = progress("consume", options, &done);
    let start = Instant::now();
    let mut read = 0u64;
    let mut last_seen = Instant::now();
    while read < options.count {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        if records.is_empty() {
            if last_seen.elapsed() > STALL {
                return Err(BenchError::Other(format!(
                    "read {read} of {} messages, then nothing for {} s",
                    options.count,
                    STALL.as_secs()
                )));
            }
            continue;
        }
        last_seen = Instant::now();
        read += records.len() as u64;
        done.store(read, Ordering::Relaxed);
    }
    let seconds = start.elapsed().as_secs_f64();
    progress.finish();
    Ok(Report::new("tally", options, read, seconds, None, 0))
}

async fn end_to_end(options: &BenchOptions, client: &ClientConfig) -> Result<Report, BenchError> {
    let mut consumer = Consumer::new(consumer_config(client)).await?;
    consumer
        .assign_topic(&options.topic, Offset::Latest)
        .await?;
    let done = Arc::new(AtomicU64::new(0));
    let produced = Arc::new(AtomicU64::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let progress = progress("end-to-end", options, &done);
    let reader = {
        let done = Arc::clone(&done);
        let produced = Arc::clone(&produced);
        let producing = Arc::clone(&producing);
        tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut received = 0u64;
            let mut last_seen = Instant::now();
            loop {
                if !producing.load(Ordering::SeqCst) && received >= produced.load(Ordering::SeqCst)
                {
                    break;
                }
                let records = consumer.poll(Duration::from_millis(200)).await?;
                let now = now_us();
                if records.is_empty() {
                    if last_seen.elapsed() > STALL {
                        return Err(BenchError::Other(format!(
                            "received {received} messages, then nothing for {} s",
                            STALL.as_secs()
                        )));
                    }
                    continue;
                }
                last_seen = Instant::now();
                for r in &records {
                    if let Some(sent) = r.value.as_deref().and_then(sent_us) {
                        latencies.record_us(now.saturating_sub(sent));
                    }
                }
                received += records.len() as u64;
                done.store(received, Ordering::Relaxed);
            }
            Ok::<_, BenchError>((received, latencies, Instant::now()))
        })
    };
    let start = Instant::now();
    let outcome = run_producers(options, client, Arc::new(AtomicU64::new(0))).await;
    if let Ok(o) = &outcome {
        produced.store(o.acked, Ordering::SeqCst);
    }
    producing.store(false, Ordering::SeqCst);
    let outcome = outcome?;
    let (received, latencies, finished) = reader
        .await
        .map_err(|e| BenchError::Other(format!("the consumer task failed: {e}")))??;
    progress.finish();
    Ok(Report::new(
        "tally",
        options,
        received,
        (finished - start).as_secs_f64(),
        latencies.summary(),
        outcome.errors,
    ))
}
