//! `tally acl add|remove|list`: ACLs with `kafka-acls.sh`'s words (`--allow-principal
//! User:alice --operation Write --topic orders`, `--resource-pattern-type prefixed`).

use anyhow::{bail, Result};
use clap::{Args, Subcommand, ValueEnum};
use tally_client::{Acl, Admin, ClientConfig};

use crate::table::Table;

#[derive(Args)]
#[command(after_help = "Examples:
  tally acl add --allow-principal User:alice --operation Write --topic orders
  tally acl add --allow-principal User:alice --operation Read --group readers
  tally acl add --deny-principal User:bob --operation All --topic pay --resource-pattern-type prefixed
  tally acl add --allow-principal User:alice --operation IdempotentWrite --cluster
  tally acl list
  tally acl remove --allow-principal User:alice --operation Write --topic orders")]
pub struct AclArgs {
    #[command(subcommand)]
    command: AclCommand,
}

#[derive(Subcommand)]
enum AclCommand {
    /// Add ACLs (one per operation).
    Add(AclSpec),
    /// Remove exactly these ACLs.
    Remove(AclSpec),
    /// List every ACL.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum Pattern {
    Literal,
    Prefixed,
}

#[derive(Args)]
struct AclSpec {
    #[arg(long, value_name = "User:NAME")]
    allow_principal: Option<String>,
    #[arg(long, value_name = "User:NAME")]
    deny_principal: Option<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite or All (repeatable).
    #[arg(long = "operation", required = true)]
    operations: Vec<String>,
    #[arg(long, default_value = "*")]
    host: String,
    #[arg(long)]
    topic: Option<String>,
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    transactional_id: Option<String>,
    #[arg(long)]
    cluster: bool,
    #[arg(long, value_enum, default_value = "literal")]
    resource_pattern_type: Pattern,
}

const OPERATIONS: [(&str, i8); 11] = [
    ("All", 2),
    ("Read", 3),
    ("Write", 4),
    ("Create", 5),
    ("Delete", 6),
    ("Alter", 7),
    ("Describe", 8),
    ("ClusterAction", 9),
    ("DescribeConfigs", 10),
    ("AlterConfigs", 11),
    ("IdempotentWrite", 12),
];
const RESOURCES: [(&str, i8); 4] = [
    ("Topic", 2),
    ("Group", 3),
    ("Cluster", 4),
    ("TransactionalId", 5),
];

fn name_of(table: &[(&'static str, i8)], code: i8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| code.to_string(), |(n, _)| n.to_string())
}

impl AclSpec {
    fn acls(&self) -> Result<Vec<Acl>> {
        let (principal, permission) = match (&self.allow_principal, &self.deny_principal) {
            (Some(p), None) => (p.clone(), 3),
            (None, Some(p)) => (p.clone(), 2),
            _ => bail!("give one of --allow-principal or --deny-principal"),
        };
        let resources: Vec<(i8, String)> = [
            self.topic.as_ref().map(|t| (2, t.clone())),
            self.group.as_ref().map(|g| (3, g.clone())),
            self.cluster.then(|| (4, "kafka-cluster".to_string())),
            self.transactional_id.as_ref().map(|t| (5, t.clone())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [(resource_type, resource_name)] = resources.as_slice() else {
            bail!("give one resource: --topic, --group, --cluster or --transactional-id");
        };
        let pattern_type = match self.resource_pattern_type {
            Pattern::Literal => 3,
            Pattern::Prefixed => 4,
        };
        self.operations
            .iter()
            .map(|op| {
                let operation = OPERATIONS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(op))
                    .map(|(_, c)| *c)
                    .ok_or_else(|| anyhow::anyhow!("unknown operation {op}"))?;
                Ok(Acl {
                    resource_type: *resource_type,
                    resource_name: resource_name.clone(),
                    pattern_type,
                    principal: principal.clone(),
                    host: self.host.clone(),
                    operation,
                    permission,
                })
            })
            .collect()
    }
}

pub async fn run(args: AclArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    match args.command {
        AclCommand::Add(spec) => {
            let acls = spec.acls()?;
            admin.create_acls(&acls).await?;
            println!("added {} ACL(s)", acls.len());
        }
        AclCommand::Remove(spec) => {
            let removed = admin.delete_acls(&spec.acls()?).await?;
            println!("removed {removed} ACL(s)");
        }
        AclCommand::List => {
            let mut table = Table::new([
                "RESOURCE",
                "NAME",
                "PATTERN",
                "PRINCIPAL",
                "HOST",
                "OPERATION",
                "PERMISSION",
            ]);
            for a in admin.list_acls().await? {
                table.row([
                    name_of(&RESOURCES, a.resource_type),
                    a.resource_name,
                    if a.pattern_type == 4 {
                        "PREFIXED".into()
                    } else {
                        "LITERAL".into()
                    },
                    a.principal,
                    a.host,
                    name_of(&OPERATIONS, a.operation),
                    if a.permission == 3 {
                        "ALLOW".into()
                    } else {
                        "DENY".into()
                    },
                ]);
            }
            println!("{}", table.render());
        }
    }
    Ok(())
}
