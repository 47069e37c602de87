use anyhow::Result;
use clap::Args;
use tally_client::{Admin, ClientConfig};

use crate::table::Table;

#[derive(Args)]
#[command(after_help = "Example:\n  tally producers orders")]
pub struct ProducersArgs {
    topic: String,
    /// Only this partition (repeatable).
    #[arg(long, short = 'p')]
    partition: Vec<i32>,
}

pub async fn run(args: ProducersArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    let partitions = (!args.partition.is_empty()).then(|| args.partition.clone());
    let producers = admin.describe_producers(&args.topic, partitions).await?;
    if producers.is_empty() {
        println!("No producers recorded for {}", args.topic);
        return Ok(());
    }
    let mut table = Table::new([
        "PARTITION",
        "PRODUCER ID",
        "EPOCH",
        "LAST SEQUENCE",
        "LAST OFFSET",
        "LAST TIMESTAMP",
    ]);
    for p in producers {
        table.row([
            p.partition.to_string(),
            p.producer_id.to_string(),
            p.producer_epoch.to_string(),
            p.last_sequence.to_string(),
            p.last_offset.map_or("-".to_string(), |o| o.to_string()),
            format_timestamp(p.last_timestamp),
        ]);
    }
    println!("{}", table.render());
    Ok(())
}

/// Milliseconds since the epoch as an RFC 3339 UTC time, without a date library.
pub fn format_timestamp(ms: i64) -> String {
    if ms < 0 {
        return "-".into();
    }
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc() {
        assert_eq!(super::format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::format_timestamp(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(super::format_timestamp(-1), "-");
    }
}
