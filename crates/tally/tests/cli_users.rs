//! `tally user` and every client command on a SASL_SSL listener, with librdkafka's settings as
//! environment variables (no password in an argument): the bootstrap admin creates a user,
//! the user produces (SCRAM-SHA-512) and consumes in a group (PLAIN) over TLS; a wrong
//! password is a one-line SASL_AUTHENTICATION_FAILED; a created user survives SIGKILL and a
//! deleted one is refused. A user created with the command line logs in with librdkafka.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::config::ClientConfig as RdConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tally_testkit::BrokerProcess;

#[path = "common/pki.rs"]
mod pki;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

struct Login<'a> {
    user: &'a str,
    password: &'a str,
    mechanism: &'a str,
}

const ADMIN: Login = Login {
    user: "admin",
    password: "admin-secret",
    mechanism: "SCRAM-SHA-512",
};

fn tally(broker: &BrokerProcess, ca: &Path, login: &Login, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(TALLY);
    command
        .args(args)
        .env("TALLY_BOOTSTRAP", broker.bootstrap())
        .env("TALLY_SECURITY_PROTOCOL", "SASL_SSL")
        .env("TALLY_SSL_CA_LOCATION", ca)
        .env("TALLY_SASL_MECHANISM", login.mechanism)
        .env("TALLY_SASL_USERNAME", login.user)
        .env("TALLY_SASL_PASSWORD", login.password);
    tally_testkit::run_with_stdin(&mut command, stdin)
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn users_made_with_the_command_line_log_in_and_their_changes_survive_sigkill() {
    let pki = pki::pki();
    let keystore = format!("ssl.keystore.location={}", pki.keystore.display());
    let users = format!("{}:{}", ADMIN.user, ADMIN.password);
    let mut broker = BrokerProcess::start_with_scheme(
        Path::new(TALLY),
        "SASL_SSL://",
        &["--set", &keystore],
        // The environment, not the command line: no password in `ps`.
        &[("TALLY_SASL_BOOTSTRAP_USERS", &users)],
    );
    let ca = pki.ca.clone();

    let created = ok(tally(
        &broker,
        &ca,
        &ADMIN,
        &["user", "create", "alice"],
        "alice-pw\n",
    ));
    assert!(
        created.contains("SCRAM-SHA-256, SCRAM-SHA-512"),
        "{created}"
    );
    let listed = ok(tally(&broker, &ca, &ADMIN, &["user", "list"], ""));
    assert!(
        listed.contains("alice") && listed.contains("iterations=4096"),
        "{listed}"
    );

    let alice = Login {
        user: "alice",
        password: "alice-pw",
        mechanism: "SCRAM-SHA-512",
    };
    ok(tally(
        &broker,
        &ca,
        &alice,
        &["produce", "orders"],
        "one\ntwo\nthree\n",
    ));
    let alice_plain = Login {
        mechanism: "PLAIN",
        ..alice
    };
    let read = ok(tally(
        &broker,
        &ca,
        &alice_plain,
        &[
            "consume",
            "orders",
            "-g",
            "readers",
            "--from-beginning",
            "-n",
            "3",
        ],
        "",
    ));
    assert_eq!(read.lines().collect::<Vec<_>>(), ["one", "two", "three"]);

    // librdkafka logs in as the user the command line made.
    let rd: BaseConsumer = RdConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-pw")
        .set("ssl.ca.location", ca.display().to_string())
        .create()
        .unwrap();
    let (_, high) = rd
        .fetch_watermarks("orders", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, 3);
    drop(rd);

    let wrong = Login {
        password: "nope",
        ..alice
    };
    let err = refused(tally(
        &broker,
        &ca,
        &wrong,
        &["produce", "orders"],
        "four\n",
    ));
    assert!(err.contains("SaslAuthenticationFailed"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("nope"), "{err}");

    broker.kill9();
    broker.restart();
    ok(tally(
        &broker,
        &ca,
        &alice,
        &["produce", "orders"],
        "four\n",
    ));
    ok(tally(
        &broker,
        &ca,
        &ADMIN,
        &["user", "delete", "alice"],
        "",
    ));
    let err = refused(tally(&broker, &ca, &alice, &["topic", "list"], ""));
    assert!(err.contains("SaslAuthenticationFailed"), "{err}");
    broker.kill9();
    broker.restart();
    let err = refused(tally(&broker, &ca, &alice, &["topic", "list"], ""));
    assert!(err.contains("SaslAuthenticationFailed"), "{err}");
    let read = ok(tally(
        &broker,
        &ca,
        &ADMIN,
        &["consume", "orders", "--from-beginning", "-n", "4"],
        "",
    ));
    assert_eq!(
        read.lines().count(),
        4,
        "nothing from the refused attempts: {read}"
    );
}

#[test]
fn unusable_security_settings_get_a_clear_message() {
    let run = |envs: &[(&str, &str)]| {
        let out = Command::new(TALLY)
            .args(["topic", "list", "--bootstrap", "127.0.0.1:1"])
            .envs(envs.iter().copied())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[("TALLY_SECURITY_PROTOCOL", "SASL_TLS")]);
    assert!(
        err.contains("SASL_TLS") && err.contains("SASL_SSL"),
        "{err}"
    );
    let err = run(&[("TALLY_SECURITY_PROTOCOL", "SASL_PLAINTEXT")]);
    assert!(err.contains("--sasl-username"), "{err}");
    let err = run(&[
        ("TALLY_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("TALLY_SASL_USERNAME", "alice"),
    ]);
    assert!(err.contains("TALLY_SASL_PASSWORD"), "{err}");
    let err = run(&[("TALLY_SECURITY_PROTOCOL", "SSL")]);
    assert!(err.contains("ssl.ca.location"), "{err}");
    let err = run(&[
        ("TALLY_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("TALLY_SASL_USERNAME", "alice"),
        ("TALLY_SASL_PASSWORD", "pw"),
        ("TALLY_SASL_MECHANISM", "GSSAPI"),
    ]);
    assert!(err.contains("GSSAPI"), "{err}");
}
