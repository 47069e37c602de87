//! Running a command-line program (`tally`, kcat, a client script) as a test does: its input
//! written, its output and status collected.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `command` with `stdin` as its input (then closed) and returns what it printed and
/// how it ended.
pub fn run_with_stdin(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for the program")
}
