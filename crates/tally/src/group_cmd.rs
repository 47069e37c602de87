use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use tally_client::{Admin, ClientConfig, ClientError, GroupDescription};
use tally_protocol::ResponseError;

use crate::table::Table;

#[derive(Subcommand)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    #[command(after_help = "Example:\n  tally group list")]
    List,
    /// Show a group's members and assignments, and per partition the committed offset, the
    /// log end offset and the lag.
    #[command(after_help = "Example:\n  tally group describe billing")]
    Describe { group: String },
    /// Delete a group without members, with its committed offsets.
    #[command(after_help = "Example:\n  tally group delete billing")]
    Delete { group: String },
    /// Set a group's committed offsets (only while the group has no members).
    #[command(
        group(ArgGroup::new("target").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime"])),
        after_help = "Examples:
  tally group reset-offsets billing --topic orders --to-earliest
  tally group reset-offsets billing --topic orders --partition 2 --to-offset 1000
  tally group reset-offsets billing --topic orders --to-datetime 2026-11-23T08:00:00Z

--to-datetime takes YYYY-MM-DD[THH:MM[:SS[.mmm]]] with an optional Z or +HH:MM offset
(UTC when none is given), or milliseconds since the epoch.")]
    ResetOffsets(ResetArgs),
}

#[derive(Args)]
pub struct ResetArgs {
    group: String,
    #[arg(long)]
    topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// The log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// The log end offset.
    #[arg(long)]
    to_latest: bool,
    /// This offset, moved into [log start, log end] when outside it.
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// The first offset whose timestamp is at or after this time.
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// Show the new offsets without committing them.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
}

pub async fn run(args: GroupArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    match args.command {
        GroupCommand::List => {
            let mut table = Table::new(["GROUP", "STATE", "TYPE"]);
            for g in admin.list_groups().await? {
                table.row([g.group_id, g.state, g.protocol_type]);
            }
            println!("{}", table.render());
        }
        GroupCommand::Describe { group } => describe(&admin, &group).await?,
        GroupCommand::Delete { group } => match admin.delete_group(&group).await {
            Ok(()) => println!("deleted group {group}"),
            Err(ClientError::Broker(ResponseError::NonEmptyGroup, _)) => {
                bail!("group '{group}' still has members; stop its consumers first")
            }
            Err(ClientError::Broker(ResponseError::GroupIdNotFound, _)) => {
                bail!("no group '{group}'")
            }
            Err(e) => return Err(e.into()),
        },
        GroupCommand::ResetOffsets(reset) => reset_offsets(&admin, reset).await?,
    }
    Ok(())
}

fn partition_list(partitions: &[(String, i32)]) -> String {
    if partitions.is_empty() {
        return "-".into();
    }
    partitions
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

async fn describe(admin: &Admin, group: &str) -> Result<()> {
    let description = admin.describe_group(group).await?;
    let committed = admin.group_offsets(group).await?;
    if description.state == "Dead" && committed.is_empty() {
        bail!("no group '{group}'");
    }
    println!(
        "group {}: {}, {} member{}{}",
        description.group_id,
        description.state,
        description.members.len(),
        if description.members.len() == 1 {
            ""
        } else {
            "s"
        },
        if description.protocol.is_empty() {
            String::new()
        } else {
            format!(
                ", protocol {} ({})",
                description.protocol, description.protocol_type
            )
        }
    );
    if !description.members.is_empty() {
        let mut members = Table::new([
            "MEMBER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
            "HOST",
            "PARTITIONS",
        ]);
        for m in &description.members {
            members.row([
                m.member_id.clone(),
                m.group_instance_id.clone().unwrap_or_else(|| "-".into()),
                m.client_id.clone(),
                m.client_host.clone(),
                partition_list(&m.assignment),
            ]);
        }
        println!("\n{}", members.render());
    }
    let owner = owners(&description);
    let partitions: BTreeSet<(String, i32)> = committed
        .keys()
        .cloned()
        .chain(owner.keys().cloned())
        .collect();
    if partitions.is_empty() {
        println!("\nno committed offsets and no assigned partitions");
        return Ok(());
    }
    let mut table = Table::new([
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "LOG-END",
        "LAG",
        "MEMBER-ID",
    ]);
    for (topic, partition) in partitions {
        let end = admin.list_offset(&topic, partition, -1).await.ok();
        let current = committed.get(&(topic.clone(), partition)).copied();
        let lag = match (current, end) {
            (Some(c), Some(e)) => (e - c).max(0).to_string(),
            _ => "-".into(),
        };
        table.row([
            topic.clone(),
            partition.to_string(),
            current.map_or("-".into(), |c| c.to_string()),
            end.map_or("-".into(), |e| e.to_string()),
            lag,
            owner
                .get(&(topic, partition))
                .cloned()
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("\n{}", table.render());
    Ok(())
}

fn owners(description: &GroupDescription) -> BTreeMap<(String, i32), String> {
    description
        .members
        .iter()
        .flat_map(|m| {
            m.assignment
                .iter()
                .map(|tp| (tp.clone(), m.member_id.clone()))
        })
        .collect()
}

async fn reset_offsets(admin: &Admin, args: ResetArgs) -> Result<()> {
    let description = admin.describe_group(&args.group).await?;
    if !description.members.is_empty() {
        bail!(
            "group '{}' has {} active member(s) (state {}); offsets can only be reset while it has none",
            args.group,
            description.members.len(),
            description.state
        );
    }
    let topic = admin.describe_topic(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) if topic.partitions.iter().any(|i| i.partition == p) => vec![p],
        Some(p) => bail!("topic '{}' has no partition {p}", args.topic),
        None => topic.partitions.iter().map(|p| p.partition).collect(),
    };
    let timestamp = match &args.to_datetime {
        Some(text) => Some(parse_datetime_ms(text)?),
        None => None,
    };
    let before = admin.group_offsets(&args.group).await?;
    let mut offsets = Vec::new();
    let mut table = Table::new(["TOPIC", "PARTITION", "PREVIOUS", "NEW"]);
    for partition in partitions {
        let earliest = admin.list_offset(&args.topic, partition, -2).await?;
        let latest = admin.list_offset(&args.topic, partition, -1).await?;
        let new = if args.to_earliest {
            earliest
        } else if args.to_latest {
            latest
        } else if let Some(n) = args.to_offset {
            n.clamp(earliest, latest)
        } else if let Some(ts) = timestamp {
            match admin.list_offset(&args.topic, partition, ts).await? {
                -1 => latest,
                o => o,
            }
        } else {
            unreachable!("clap requires one target")
        };
        let previous = before
            .get(&(args.topic.clone(), partition))
            .map_or("-".into(), |o| o.to_string());
        table.row([
            args.topic.clone(),
            partition.to_string(),
            previous,
            new.to_string(),
        ]);
        offsets.push((args.topic.clone(), partition, new));
    }
    if !args.dry_run {
        match admin.set_group_offsets(&args.group, &offsets).await {
            Ok(()) => {}
            Err(ClientError::Broker(ResponseError::UnknownMemberId, _)) => bail!(
                "group '{}' gained members while resetting; offsets can only be reset while it has none",
                args.group
            ),
            Err(e) => return Err(e.into()),
        }
    }
    println!("{}", table.render());
    if args.dry_run {
        println!("(dry run: nothing committed)");
    }
    Ok(())
}

/// `YYYY-MM-DD[THH:MM[:SS[.fff]]][Z|±HH:MM]` (UTC without a zone) or milliseconds since the
/// epoch, to milliseconds since the epoch.
pub fn parse_datetime_ms(text: &str) -> Result<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || format!("cannot read '{text}' as a date and time (e.g. 2026-11-23T08:00:00Z)");
    let (date, rest) = text.split_at(text.find(['T', ' ']).unwrap_or(text.len()));
    let rest = rest.get(1..).unwrap_or("");
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d[..] else { bail!(bad()) };
    let year: i64 = y.parse().with_context(bad)?;
    let month: i64 = mo.parse().with_context(bad)?;
    let day: i64 = da.parse().with_context(bad)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        bail!(bad());
    }
    // Zone: a trailing Z or ±HH:MM.
    let (time, offset_min) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|_| rest.len() >= 6) {
        let (t, zone) = rest.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').with_context(bad)?;
        let minutes =
            h.parse::<i64>().with_context(bad)? * 60 + m.parse::<i64>().with_context(bad)?;
        (t, sign * minutes)
    } else {
        (rest, 0)
    };
    let mut hms = [0i64; 3];
    let mut millis = 0i64;
    if !time.is_empty() {
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        for (i, part) in clock.split(':').enumerate() {
            if i >= 3 {
                bail!(bad());
            }
            hms[i] = part.parse().with_context(bad)?;
        }
        if !fraction.is_empty() {
            let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
            millis = digits.parse().with_context(bad)?;
        }
    }
    if hms[0] > 23 || hms[1] > 59 || hms[2] > 60 {
        bail!(bad());
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hms[0] * 3_600 + hms[1] * 60 + hms[2] - offset_min * 60;
    Ok(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_datetime_ms;

    #[test]
    fn parses_dates_and_times() {
        assert_eq!(parse_datetime_ms("1970-01-01").unwrap(), 0);
        assert_eq!(
            parse_datetime_ms("1700000000000").unwrap(),
            1_700_000_000_000
        );
        // 2023-11-14T22:13:20Z is 1_700_000_000 s.
        assert_eq!(
            parse_datetime_ms("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime_ms("2023-11-14T22:13:20.123").unwrap(),
            1_700_000_000_123
        );
        assert_eq!(
            parse_datetime_ms("2023-11-15T00:13:20+02:00").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_datetime_ms("2023-11-14T20:13-02:00").unwrap(),
            1_700_000_000_000 - 20_000
        );
        assert_eq!(
            parse_datetime_ms("2024-02-29T00:00:00Z").unwrap(),
            1_709_164_800_000
        );
        for bad in ["yesterday", "2023-13-01", "2023-11-14T25:00", "2023-11", ""] {
            assert!(parse_datetime_ms(bad).is_err(), "{bad}");
        }
    }
}
