use tally_client::{Admin, ClientConfig, ClientError, NewTopic};

use crate::error::BenchError;
use crate::options::BenchOptions;

/// Creates the bench topic with `--partitions` if it does not exist; an existing topic must
/// have that many partitions. Returns the messages it already holds.
pub async fn prepare_topic(
    options: &BenchOptions,
    client: &ClientConfig,
) -> Result<u64, BenchError> {
    let admin = Admin::new(client.clone()).await?;
    let info = match admin.describe_topic(&options.topic).await {
        Ok(info) => info,
        Err(ClientError::UnknownTopic(_)) => {
            let mut topic = NewTopic::new(options.topic.clone(), options.partitions);
            for pair in &options.topic_configs {
                if let Some((k, v)) = pair.split_once('=') {
                    topic.configs.push((k.to_string(), v.to_string()));
                }
            }
            admin.create_topic(topic).await?;
            admin.describe_topic(&options.topic).await?
        }
        Err(e) => return Err(e.into()),
    };
    if info.partitions.len() as i32 != options.partitions {
        return Err(BenchError::Options(format!(
            "topic '{}' has {} partitions, not {}; pick another --topic",
            options.topic,
            info.partitions.len(),
            options.partitions
        )));
    }
    let mut held = 0;
    for p in &info.partitions {
        let start = admin.list_offset(&options.topic, p.partition, -2).await?;
        let end = admin.list_offset(&options.topic, p.partition, -1).await?;
        held += (end - start).max(0) as u64;
    }
    Ok(held)
}
