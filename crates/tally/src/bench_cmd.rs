use anyhow::Result;
use tally_bench::{run_tally, BenchOptions};
use tally_client::ClientConfig;

pub async fn run(options: BenchOptions, mut client: ClientConfig) -> Result<()> {
    client.client_id = "tally-bench".into();
    let report = run_tally(&options, client).await?;
    if options.json {
        println!("{}", report.json());
    } else {
        println!("{}", report.table());
    }
    Ok(())
}
