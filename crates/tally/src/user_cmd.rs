//! `tally user create|delete|list`: SCRAM users (AlterUserScramCredentials and
//! DescribeUserScramCredentials). The password comes from `--password-file`, the
//! TALLY_USER_PASSWORD environment variable or standard input, never from an argument that
//! `ps` would show.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use tally_client::{Admin, ClientConfig};

use crate::table::Table;

#[derive(Args)]
#[command(after_help = "Examples:
  printf 'secret\\n' | tally user create alice
  TALLY_USER_PASSWORD=secret tally user create alice --mechanism SCRAM-SHA-256
  tally user list
  tally user delete alice")]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user, or set a new password (SCRAM-SHA-256 and SCRAM-SHA-512 by default).
    Create(CreateArgs),
    /// Delete a user's credentials (every mechanism unless --mechanism is given).
    Delete(DeleteArgs),
    /// List users and their SCRAM mechanisms.
    List,
}

#[derive(Args)]
struct CreateArgs {
    user: String,
    /// A file whose first line is the password (else TALLY_USER_PASSWORD, else stdin).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Only this mechanism: SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long)]
    mechanism: Option<String>,
    /// PBKDF2 iterations (Kafka accepts 4096 to 16384).
    #[arg(long, default_value_t = 4096)]
    iterations: u32,
}

#[derive(Args)]
struct DeleteArgs {
    user: String,
    #[arg(long)]
    mechanism: Option<String>,
}

const MECHANISMS: [&str; 2] = ["SCRAM-SHA-256", "SCRAM-SHA-512"];

pub async fn run(args: UserArgs, client: ClientConfig) -> Result<()> {
    let admin = Admin::new(client).await?;
    match args.command {
        UserCommand::Create(a) => {
            let password = read_password(a.password_file.as_ref())?;
            for m in chosen(a.mechanism.as_deref()) {
                admin
                    .upsert_scram_credential(&a.user, m, &password, a.iterations)
                    .await
                    .with_context(|| format!("{m} credential of {}", a.user))?;
            }
            println!(
                "user {} has credentials: {}",
                a.user,
                chosen(a.mechanism.as_deref()).join(", ")
            );
        }
        UserCommand::Delete(a) => {
            let known = admin
                .describe_scram_users(std::slice::from_ref(&a.user))
                .await?;
            let has: Vec<String> = known
                .iter()
                .flat_map(|u| u.credentials.iter().map(|(m, _)| m.clone()))
                .collect();
            let mut deleted = Vec::new();
            for m in chosen(a.mechanism.as_deref()) {
                if a.mechanism.is_some() || has.iter().any(|h| h == m) {
                    admin.delete_scram_credential(&a.user, m).await?;
                    deleted.push(m);
                }
            }
            println!("deleted {} of {}", deleted.join(", "), a.user);
        }
        UserCommand::List => {
            let mut table = Table::new(["USER", "MECHANISMS"]);
            for u in admin.describe_scram_users(&[]).await? {
                let mechanisms: Vec<String> = u
                    .credentials
                    .iter()
                    .map(|(m, i)| format!("{m} (iterations={i})"))
                    .collect();
                table.row([u.user, mechanisms.join(", ")]);
            }
            println!("{}", table.render());
        }
    }
    Ok(())
}

fn chosen(mechanism: Option<&str>) -> Vec<&str> {
    match mechanism {
        Some(m) => vec![m],
        None => MECHANISMS.to_vec(),
    }
}

fn read_password(file: Option<&PathBuf>) -> Result<String> {
    let line = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("--password-file {}", path.display()))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        None => match std::env::var("TALLY_USER_PASSWORD") {
            Ok(p) => p,
            Err(_) => {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from stdin")?;
                line.trim_end_matches(['\r', '\n']).to_string()
            }
        },
    };
    if line.is_empty() {
        bail!(
            "the password is empty (give it with --password-file, TALLY_USER_PASSWORD or on stdin)"
        );
    }
    Ok(line)
}
