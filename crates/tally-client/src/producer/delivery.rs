//! Delivery results, shared per batch. Every record of a batch has the same fate, so the batch
//! owns one outcome and each record's future reads its own offset from it (base + index): one
//! allocation per batch instead of a channel per record, which is what lets a producer hand
//! out a million futures a second.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{ClientError, ProduceError};
use crate::record::RecordMetadata;

/// (base offset, log append time) or why the batch was not stored.
type BatchResult = Result<(i64, i64), ProduceError>;

#[derive(Default)]
struct OutcomeState {
    result: Option<BatchResult>,
    wakers: Vec<Waker>,
}

#[derive(Default)]
struct BatchOutcome {
    state: Mutex<OutcomeState>,
}

impl BatchOutcome {
    fn complete(&self, result: BatchResult) {
        let wakers = {
            let mut state = self.state.lock().expect("lock");
            if state.result.is_some() {
                return;
            }
            state.result = Some(result);
            std::mem::take(&mut state.wakers)
        };
        for waker in wakers {
            waker.wake();
        }
    }
}

/// The batch's side: settles every record's future once. Dropped unsettled (the producer went
/// away), it settles them with `ClientError::Closed` so no future waits forever.
pub(crate) struct Completion(Arc<BatchOutcome>);

impl Completion {
    pub fn new() -> Completion {
        Completion(Arc::new(BatchOutcome::default()))
    }

    /// The future of the record at `index` in this batch.
    pub fn future(&self, index: usize, partition: i32, timestamp_ms: i64) -> DeliveryFuture {
        DeliveryFuture(DeliveryState::Waiting {
            outcome: Arc::clone(&self.0),
            index: index as i64,
            partition,
            timestamp_ms,
            waker_slot: None,
        })
    }

    /// Stored at `base_offset` (-1 when the broker did not say where).
    pub fn succeed(self, base_offset: i64, log_append_time_ms: i64) {
        self.0.complete(Ok((base_offset, log_append_time_ms)));
    }

    pub fn fail(self, error: ProduceError) {
        self.0.complete(Err(error));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.0
            .complete(Err(ProduceError::Client(ClientError::Closed)));
    }
}

/// Resolves to where the record was stored, or why it was not.
pub struct DeliveryFuture(DeliveryState);

enum DeliveryState {
    Waiting {
        outcome: Arc<BatchOutcome>,
        index: i64,
        partition: i32,
        timestamp_ms: i64,
        /// Where this future's waker sits in the outcome's list, once registered.
        waker_slot: Option<usize>,
    },
    Ready(Option<Result<RecordMetadata, ProduceError>>),
}

impl DeliveryFuture {
    /// A future that is already settled (a record refused before it joined a batch).
    pub(crate) fn ready(result: Result<RecordMetadata, ProduceError>) -> DeliveryFuture {
        DeliveryFuture(DeliveryState::Ready(Some(result)))
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            DeliveryState::Ready(result) => {
                Poll::Ready(result.take().expect("polled after completion"))
            }
            DeliveryState::Waiting {
                outcome,
                index,
                partition,
                timestamp_ms,
                waker_slot,
            } => {
                let mut state = outcome.state.lock().expect("lock");
                match &state.result {
                    Some(Ok((base_offset, log_append_time_ms))) => {
                        Poll::Ready(Ok(RecordMetadata {
                            partition: *partition,
                            offset: if *base_offset < 0 {
                                -1
                            } else {
                                base_offset + *index
                            },
                            timestamp_ms: if *log_append_time_ms >= 0 {
                                *log_append_time_ms
                            } else {
                                *timestamp_ms
                            },
                        }))
                    }
                    Some(Err(error)) => Poll::Ready(Err(error.clone())),
                    None => {
                        match waker_slot {
                            Some(slot) if *slot < state.wakers.len() => {
                                if !state.wakers[*slot].will_wake(cx.waker()) {
                                    state.wakers[*slot] = cx.waker().clone();
                                }
                            }
                            _ => {
                                *waker_slot = Some(state.wakers.len());
                                state.wakers.push(cx.waker().clone());
                            }
                        }
                        Poll::Pending
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Count(std::sync::atomic::AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn poll(f: &mut DeliveryFuture, waker: &Waker) -> Poll<Result<RecordMetadata, ProduceError>> {
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn each_record_gets_its_own_offset_and_is_woken_once() {
        let count = Arc::new(Count(Default::default()));
        let waker = Waker::from(Arc::clone(&count));
        let completion = Completion::new();
        let mut first = completion.future(0, 2, 100);
        let mut third = completion.future(2, 2, 300);
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut first, &waker).is_pending());
        assert!(poll(&mut third, &waker).is_pending());
        completion.succeed(40, -1);
        assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 2);
        let Poll::Ready(Ok(meta)) = poll(&mut third, &waker) else {
            panic!("not ready")
        };
        assert_eq!(
            (meta.partition, meta.offset, meta.timestamp_ms),
            (2, 42, 300)
        );
        let Poll::Ready(Ok(meta)) = poll(&mut first, &waker) else {
            panic!("not ready")
        };
        assert_eq!(meta.offset, 40);
    }

    #[test]
    fn unknown_base_offset_and_log_append_time() {
        let completion = Completion::new();
        let mut f = completion.future(3, 0, 7);
        completion.succeed(-1, 999);
        let waker = Waker::noop();
        let Poll::Ready(Ok(meta)) = poll(&mut f, waker) else {
            panic!("not ready")
        };
        assert_eq!((meta.offset, meta.timestamp_ms), (-1, 999));
    }

    #[test]
    fn a_dropped_batch_settles_its_futures_as_closed() {
        let completion = Completion::new();
        let mut f = completion.future(0, 0, 0);
        drop(completion);
        assert!(matches!(
            poll(&mut f, Waker::noop()),
            Poll::Ready(Err(ProduceError::Client(ClientError::Closed)))
        ));
    }

    #[test]
    fn a_failure_reaches_every_record() {
        let completion = Completion::new();
        let mut a = completion.future(0, 0, 0);
        let mut b = completion.future(1, 0, 0);
        completion.fail(ProduceError::RecordTooLarge { size: 2, max: 1 });
        for f in [&mut a, &mut b] {
            assert!(matches!(
                poll(f, Waker::noop()),
                Poll::Ready(Err(ProduceError::RecordTooLarge { .. }))
            ));
        }
    }
}
