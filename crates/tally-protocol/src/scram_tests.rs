use super::*;

// RFC 7677, section 3: user "user", password "pencil".
const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_credential(password: &str) -> ScramCredential {
    let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
    ScramCredential::from_password(ScramMechanism::Sha256, password.as_bytes(), &salt, 4096)
}

#[test]
fn the_client_side_matches_rfc_7677() {
    let mut client = ScramClient::new(ScramMechanism::Sha256, "user", "pencil", CLIENT_NONCE);
    assert_eq!(client.first_message(), CLIENT_FIRST.as_bytes());
    let final_message = client.final_message(SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(final_message).unwrap(), CLIENT_FINAL);
    client.verify_server_final(SERVER_FINAL.as_bytes()).unwrap();
    let forged = "v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    assert_eq!(
        client.verify_server_final(forged.as_bytes()),
        Err(ScramError::ServerSignature)
    );
}

#[test]
fn the_server_side_matches_rfc_7677() {
    let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
    assert_eq!(first.username, "user");
    let (exchange, server_first) = ServerExchange::start(
        ScramMechanism::Sha256,
        first,
        rfc_credential("pencil"),
        SERVER_NONCE,
    );
    assert_eq!(String::from_utf8(server_first).unwrap(), SERVER_FIRST);
    let server_final = exchange.finish(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(server_final).unwrap(), SERVER_FINAL);
}

#[test]
fn a_proof_made_from_another_password_is_refused() {
    let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
    let (exchange, _) = ServerExchange::start(
        ScramMechanism::Sha256,
        first,
        rfc_credential("crayon"),
        SERVER_NONCE,
    );
    assert_eq!(
        exchange.finish(CLIENT_FINAL.as_bytes()),
        Err(ScramError::BadProof)
    );
}

fn exchange(mechanism: ScramMechanism, stored: &str, tried: &str) -> Result<(), ScramError> {
    let credential = ScramCredential::from_password(mechanism, stored.as_bytes(), b"salt", 4096);
    let mut client = ScramClient::new(mechanism, "al,i=ce", tried, "abc");
    let first = parse_client_first(&client.first_message())?;
    assert_eq!(first.username, "al,i=ce");
    let (server, server_first) = ServerExchange::start(mechanism, first, credential, "xyz");
    let client_final = client.final_message(&server_first)?;
    let server_final = server.finish(&client_final)?;
    client.verify_server_final(&server_final)
}

#[test]
fn both_mechanisms_agree_with_themselves_and_refuse_a_wrong_password() {
    for m in ScramMechanism::ALL {
        assert_eq!(exchange(m, "secret", "secret"), Ok(()), "{}", m.name());
        assert_eq!(
            exchange(m, "secret", "Secret"),
            Err(ScramError::BadProof),
            "{}",
            m.name()
        );
        assert_eq!(ScramMechanism::from_name(m.name()), Some(m));
        assert_eq!(ScramMechanism::from_kafka_type(m.kafka_type()), Some(m));
    }
    assert_eq!(ScramMechanism::from_name("SCRAM-SHA-1"), None);
}

#[test]
fn a_stored_credential_checks_a_plain_password() {
    for m in ScramMechanism::ALL {
        let c = ScramCredential::from_password(m, b"hunter2", b"0123456789abcdef", 4096);
        assert!(c.matches_password(m, b"hunter2"));
        assert!(!c.matches_password(m, b"hunter3"));
        assert!(!c.matches_password(m, b""));
        assert_eq!(c.stored_key.len(), m.key_len());
    }
}

#[test]
fn what_kafka_refuses_is_refused() {
    let refuse = |m: &str| parse_client_first(m.as_bytes()).unwrap_err();
    assert_eq!(refuse("p=tls-unique,,n=u,r=x"), ScramError::ChannelBinding);
    assert_eq!(refuse("n,a=other,n=u,r=x"), ScramError::AuthorizationId);
    assert!(parse_client_first(b"n,a=u,n=u,r=x").is_ok());
    assert_eq!(
        refuse("n,,n=u,r=x,tokenauth=true"),
        ScramError::Extension("tokenauth".into())
    );
    assert_eq!(
        refuse("n,,m=ext,n=u,r=x"),
        ScramError::Extension("m".into())
    );
    assert!(matches!(refuse("n,,n=u"), ScramError::Malformed(_)));
    assert!(matches!(refuse("n,,n=u,r="), ScramError::Malformed(_)));
    assert!(matches!(refuse("n,,n=a=2Xb,r=x"), ScramError::Malformed(_)));
    assert!(matches!(refuse("x,,n=u,r=x"), ScramError::Malformed(_)));
    assert!(matches!(refuse(""), ScramError::Malformed(_)));
    assert!(matches!(
        parse_client_first(&[0xff, 0xfe]).unwrap_err(),
        ScramError::Malformed(_)
    ));
}

#[test]
fn a_final_message_with_another_nonce_or_binding_is_refused() {
    let start = || {
        let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
        ServerExchange::start(
            ScramMechanism::Sha256,
            first,
            rfc_credential("pencil"),
            SERVER_NONCE,
        )
        .0
    };
    let other_nonce = CLIENT_FINAL.replace("k0,p=", "k1,p=");
    assert_eq!(
        start().finish(other_nonce.as_bytes()),
        Err(ScramError::Nonce)
    );
    let other_binding = CLIENT_FINAL.replace("c=biws", "c=eSws");
    assert_eq!(
        start().finish(other_binding.as_bytes()),
        Err(ScramError::ChannelBinding)
    );
    assert!(matches!(
        start().finish(b"c=biws,r=x"),
        Err(ScramError::Malformed(_))
    ));
    assert_eq!(
        start().finish(CLIENT_FINAL.replace("p=dHzb", "p=dHzc").as_bytes()),
        Err(ScramError::BadProof)
    );
    assert_eq!(
        start().finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA"),
        Err(ScramError::BadProof)
    );
}

#[test]
fn the_client_refuses_a_server_that_does_not_extend_its_nonce() {
    let mut client = ScramClient::new(ScramMechanism::Sha256, "user", "pencil", CLIENT_NONCE);
    let reply = format!("r={CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    assert_eq!(
        client.final_message(reply.as_bytes()),
        Err(ScramError::Nonce)
    );
    let reply = "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    assert_eq!(
        client.final_message(reply.as_bytes()),
        Err(ScramError::Nonce)
    );
    let reply = format!("r={CLIENT_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0");
    assert_eq!(
        client.final_message(reply.as_bytes()),
        Err(ScramError::Iterations(0))
    );
    let reply = format!("r={CLIENT_NONCE}x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000000");
    assert_eq!(
        client.final_message(reply.as_bytes()),
        Err(ScramError::Iterations(1_000_000)),
        "a broker may not make the client derive a million rounds"
    );
    assert_eq!(
        client.final_message(b"e=invalid-proof"),
        Err(ScramError::ServerError("invalid-proof".into()))
    );
}

#[test]
fn sasl_names_escape_commas_and_equals() {
    for name in ["plain", "a,b", "a=b", "=2C", ",=,", ""] {
        assert_eq!(decode_saslname(&encode_saslname(name)).unwrap(), name);
    }
    assert_eq!(encode_saslname("a,b=c"), "a=2Cb=3Dc");
    assert!(decode_saslname("a=").is_err());
}

proptest::proptest! {
    /// Any bytes, at any step of either side, are an error or a result: never a panic.
    #[test]
    fn malformed_scram_messages_are_errors_not_panics(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        text in "[a-z=,0-9+/]{0,80}",
    ) {
        for input in [bytes.as_slice(), text.as_bytes()] {
            let _ = parse_client_first(input);
            let _ = decode_saslname(&String::from_utf8_lossy(input));
            let first = parse_client_first(CLIENT_FIRST.as_bytes()).unwrap();
            let (exchange, _) = ServerExchange::start(
                ScramMechanism::Sha256,
                first,
                rfc_credential("pencil"),
                SERVER_NONCE,
            );
            proptest::prop_assert!(exchange.finish(input).is_err());
            let mut client = ScramClient::new(ScramMechanism::Sha512, "u", "p", "n");
            // (A valid server-first with a huge iteration count would only be slow.)
            if !input.windows(2).any(|w| w == b"i=") {
                let _ = client.final_message(input);
            }
            proptest::prop_assert!(client.verify_server_final(input).is_err());
        }
    }
}
