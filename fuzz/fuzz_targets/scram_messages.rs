//! SCRAM messages from a hostile peer, on both sides of the exchange: the server reading a
//! client-first and a client-final message, the client reading a server-first and a
//! server-final message. Every input is an error or a result, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_protocol::scram::{
    parse_client_first, ScramClient, ScramCredential, ScramMechanism, ServerExchange,
};

fuzz_target!(|data: &[u8]| {
    let _ = parse_client_first(data);
    let credential = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt", 1);
    if let Ok(first) = parse_client_first(b"n,,n=user,r=abc") {
        let (exchange, _) = ServerExchange::start(ScramMechanism::Sha256, first, credential, "xyz");
        let _ = exchange.finish(data);
    }
    let mut client = ScramClient::new(ScramMechanism::Sha512, "user", "pw", "abc");
    let _ = client.final_message(data);
    let _ = client.verify_server_final(data);
});
