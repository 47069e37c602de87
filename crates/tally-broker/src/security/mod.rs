//! Who a connection is: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on SASL_PLAINTEXT and
//! SASL_SSL listeners, and the SCRAM credentials it checks against.

pub mod credential_store;
pub mod sasl_session;

pub use credential_store::{CredentialChange, CredentialError, CredentialStore};
pub use sasl_session::{Mechanism, SaslSession, Step, ANONYMOUS};
