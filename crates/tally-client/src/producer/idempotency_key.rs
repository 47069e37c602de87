//! A record's idempotency key put where its topic wants it: Tally's topic config
//! `idempotency.key` names the record key (`key`) or a header (`header:NAME`). The producer
//! reads each topic's setting once (DescribeConfigs) and remembers it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tally_protocol::KeySource;

use crate::cluster::Cluster;
use crate::error::ClientError;
use crate::record::{Header, ProducerRecord};

#[derive(Default)]
pub(crate) struct KeySources {
    known: Mutex<BTreeMap<String, Option<KeySource>>>,
}

impl KeySources {
    /// Moves `record.idempotency_key` into the record key or the topic's header.
    pub(crate) async fn place(
        &self,
        cluster: &Cluster,
        record: &mut ProducerRecord,
    ) -> Result<(), ClientError> {
        let Some(key) = record.idempotency_key.take() else {
            return Ok(());
        };
        let cached = self.known.lock().expect("lock").get(&record.topic).cloned();
        let source = match cached {
            Some(source) => source,
            None => {
                let source = fetch(cluster, &record.topic).await?;
                self.known
                    .lock()
                    .expect("lock")
                    .insert(record.topic.clone(), source.clone());
                source
            }
        };
        match source {
            Some(KeySource::RecordKey) => match &record.key {
                Some(existing) if *existing != key => Err(ClientError::Config(format!(
                    "topic {} takes the record key as its idempotency key: set the key or the idempotency key, not two different ones",
                    record.topic
                ))),
                _ => {
                    record.key = Some(key);
                    Ok(())
                }
            },
            Some(KeySource::Header(name)) => {
                record.headers.retain(|h| h.key != name);
                record.headers.push(Header {
                    key: name,
                    value: Some(key),
                });
                Ok(())
            }
            None => Err(ClientError::Config(format!(
                "topic {} has no idempotency keys (idempotency.key=none): the record would not be deduplicated",
                record.topic
            ))),
        }
    }
}

async fn fetch(cluster: &Cluster, topic: &str) -> Result<Option<KeySource>, ClientError> {
    let configs = crate::admin::describe_topic_configs(cluster, topic).await?;
    let value = configs
        .iter()
        .find(|(name, _, _)| name == "idempotency.key")
        .map(|(_, value, _)| value.as_str())
        .ok_or_else(|| {
            ClientError::Config(format!(
                "the broker does not know idempotency.key (topic {topic}): not a Tally broker?"
            ))
        })?;
    KeySource::parse(value).map_err(ClientError::Config)
}
