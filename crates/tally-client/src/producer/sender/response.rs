//! The sender's side of a Produce answer: each batch acknowledged, retried, or failed for
//! good, and what a refusal means for the producer's epoch and sequences.

use super::*;

impl Sender {
    pub(super) fn handle(&mut self, event: ResponseEvent) {
        if let Some(n) = self.node_in_flight.get_mut(&event.node) {
            *n = n.saturating_sub(1);
        }
        let now = Instant::now();
        let backoff = Duration::from_millis(self.inner.config.retry_backoff_ms);
        let acks_zero = self.inner.config.acks == 0;
        let recovers_locally = self.recovers_locally();
        let answers: BTreeMap<TopicPartition, (i16, i64, i64, Option<String>)> = match &event.result
        {
            Ok(response) => response
                .responses
                .iter()
                .flat_map(|t| {
                    t.partition_responses.iter().map(move |p| {
                        (
                            (t.name.0.to_string(), p.index),
                            (
                                p.error_code,
                                p.base_offset,
                                p.log_append_time_ms,
                                p.error_message.as_ref().map(|m| m.to_string()),
                            ),
                        )
                    })
                })
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        for (tp, id) in event.batches {
            let Some(state) = self.partitions.get_mut(&tp) else {
                continue;
            };
            // Every send is answered once, even for a batch failed meanwhile (a broker that
            // stopped serving Produce): its slot is free either way.
            state.in_flight = state.in_flight.saturating_sub(1);
            let Some(index) = state.batches.iter().position(|b| b.id == id) else {
                continue;
            };
            state.batches[index].in_flight = false;
            let outcome = match (&event.result, answers.get(&tp)) {
                (Err(e), _) => Err((e.clone(), None)),
                (Ok(_), _) if acks_zero => Ok((0, -1, -1)),
                (Ok(_), None) => Err((
                    ClientError::Protocol(format!("no answer for {}-{}", tp.0, tp.1)),
                    None,
                )),
                (Ok(_), Some((0, base, time, _))) => Ok((0, *base, *time)),
                (Ok(_), Some((code, base, time, message))) => {
                    if *code == ResponseError::DuplicateSequenceNumber.code() {
                        // Written before; an old broker does not say where.
                        Ok((*code, -1, *time))
                    } else {
                        let _ = base;
                        Err((ClientError::broker(*code, message.as_deref()), Some(*code)))
                    }
                }
            };
            match outcome {
                Ok((_, base_offset, log_append_time)) => {
                    let batch = state.batches.remove(index).expect("batch");
                    if let Some(last) = batch.last_sequence() {
                        state.last_acked_sequence = last;
                    }
                    state.unresolved = false;
                    let n = batch.record_count as usize;
                    batch.succeed(base_offset, log_append_time);
                    self.inner.outstanding.fetch_sub(n as u64, Ordering::SeqCst);
                }
                Err((error, code)) => {
                    let idempotent = recovers_locally;
                    let batch = &mut state.batches[index];
                    batch.last_error = Some(error.clone());
                    match code {
                        // Not an error answer: the request failed in transit; the batch may be in
                        // the log. Resend the same bytes.
                        None => {
                            batch.retry_at = Some(now + backoff);
                        }
                        Some(45) if idempotent => {
                            debug!(topic = %tp.0, partition = tp.1, index, stamp = ?batch.stamp, attempts = batch.attempts, "out of order");
                            // The broker did not append it.
                            batch.fate = Fate::Unwritten;
                            batch.retry_at = Some(now + backoff);
                            // Head of the line: nothing we sent before it is unsettled, yet the
                            // broker wants another sequence.
                            if index == 0 {
                                // Its state and ours differ: bump the epoch and start over.
                                warn!(topic = %tp.0, partition = tp.1, "OUT_OF_ORDER_SEQUENCE_NUMBER at the head of the line; bumping the epoch");
                                self.bump_needed = true;
                                self.draining = true;
                            }
                        }
                        Some(47) | Some(59) | Some(90) if idempotent => {
                            batch.fate = Fate::Unwritten;
                            batch.retry_at = Some(now + backoff);
                            self.new_id_needed = true;
                            self.draining = true;
                        }
                        Some(c)
                            if ResponseError::try_from_code(c)
                                .is_some_and(|e| e.is_retriable()) =>
                        {
                            if matches!(c, 3 | 5 | 6 | 74 | 75) {
                                self.metadata_stale = true;
                            }
                            // Some retriable errors (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND)
                            // may come after a write: the fate stays unknown.
                            batch.retry_at = Some(now + backoff);
                        }
                        Some(_) => {
                            // Refused for good: the batch was not written.
                            let batch = state.batches.remove(index).expect("batch");
                            let stamped = batch.stamp.is_some();
                            let n = batch.record_count as usize;
                            self.inner.failed_records.fetch_add(1, Ordering::SeqCst);
                            batch.fail(ProduceError::Rejected(error));
                            self.inner.outstanding.fetch_sub(n as u64, Ordering::SeqCst);
                            if recovers_locally && stamped {
                                // Its sequence is now a hole the next batches would hit.
                                self.bump_needed = true;
                                self.draining = true;
                            }
                        }
                    }
                }
            }
        }
    }
}
