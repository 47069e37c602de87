//! Who a connection is: SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on SASL_PLAINTEXT and
//! SASL_SSL listeners, and the SCRAM credentials it checks against; what it may do: ACLs
//! and the authorizer's decision.

pub mod acl;
pub mod acl_store;
pub mod cert_principal;
pub mod credential_store;
mod durable_file;
mod raft_tls;
pub mod sasl_session;

pub use acl_store::AclStore;
pub use credential_store::{CredentialChange, CredentialError, CredentialStore};
pub use raft_tls::RaftTls;
pub use sasl_session::{Mechanism, SaslSession, Step, ANONYMOUS};
