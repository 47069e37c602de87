use tally_client::{ClientError, ProduceError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BenchError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
    #[error("invalid options: {0}")]
    Options(String),
    #[error("{0}")]
    Other(String),
}
