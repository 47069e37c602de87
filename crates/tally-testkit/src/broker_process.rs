//! Runs `tally serve` as a real child process on a loopback port and a data directory that
//! outlives restarts, so tests can SIGKILL it and start it again on the same data.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct BrokerProcess {
    bin: PathBuf,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Environment for the next start (cleared with [`BrokerProcess::set_env`]).
    env: Vec<(String, String)>,
    work: TempDir,
    starts: usize,
    /// Prefix of `--listen`: empty (PLAINTEXT) or e.g. `SSL://`.
    scheme: String,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A loopback port that was free a moment ago, outside the kernel's ephemeral range
/// (32768-60999), so a port another test or connection gets from the kernel cannot take it
/// before the caller binds it: for addresses that must be known before the process that binds
/// them starts (a cluster's Raft voters).
pub fn free_fixed_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut z = seed.wrapping_add(n.wrapping_mul(0xbf58_476d_1ce4_e5b9));
        z ^= z >> 31;
        let port = 20_000 + (z % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl BrokerProcess {
    /// Starts `bin serve` on a fresh temporary data directory and a free loopback port.
    pub fn start(bin: &Path, extra_args: &[&str]) -> BrokerProcess {
        Self::start_with_env(bin, extra_args, &[])
    }

    /// As [`BrokerProcess::start`], with environment variables (e.g. `TALLY_FAILPOINT`).
    pub fn start_with_env(bin: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> BrokerProcess {
        Self::start_in(bin, None, extra_args, env)
    }

    /// As [`BrokerProcess::start_with_env`], with the data in `data_dir` when given (for
    /// example on a small filesystem that can fill up).
    pub fn start_in(
        bin: &Path,
        data_dir: Option<PathBuf>,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let mut broker = Self::start_in_unstarted(bin, extra_args, env);
        if let Some(d) = data_dir {
            broker.data_dir = d;
        }
        broker.spawn();
        broker
    }

    fn start_in_unstarted(bin: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> BrokerProcess {
        let work = tempfile::Builder::new()
            .prefix("tally-test-")
            .tempdir()
            .expect("temp dir");
        let data_dir = work.path().join("data");
        // Port 0: the broker binds a free port itself and says which in its ready line. (Picking
        // a free port here and passing it races with other tests' ephemeral ports.)
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        BrokerProcess {
            bin: bin.to_path_buf(),
            child: None,
            addr,
            data_dir,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            work,
            starts: 0,
            scheme: String::new(),
        }
    }

    /// As [`BrokerProcess::start_with_env`] on a listener of another security protocol:
    /// `scheme` is its prefix, such as `SSL://`.
    pub fn start_with_scheme(
        bin: &Path,
        scheme: &str,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let mut broker = Self::start_in_unstarted(bin, extra_args, env);
        broker.scheme = scheme.to_string();
        broker.spawn();
        broker
    }

    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.work.path().join(format!("broker-{n}.log"))
    }

    fn spawn(&mut self) {
        self.spawn_child();
        self.wait_ready();
    }

    fn spawn_child(&mut self) {
        self.starts += 1;
        let log = File::create(self.log_path(self.starts)).expect("log file");
        let child = Command::new(&self.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(format!("{}{}", self.scheme, self.addr))
            // A free port for /metrics: tests run side by side (so extra_args must not
            // repeat --http; clap refuses a flag given twice).
            .arg("--http")
            .arg("127.0.0.1:0")
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log clone"))
            .stderr(log)
            .spawn()
            .expect("spawn tally serve");
        self.child = Some(child);
    }

    /// The address after `field=` in this start's "tally broker ready" line, if logged.
    fn ready_field(&self, field: &str) -> Option<SocketAddr> {
        let log = std::fs::read_to_string(self.log_path(self.starts)).ok()?;
        let line = log.lines().find(|l| l.contains("tally broker ready"))?;
        let key = format!(" {field}=");
        let start = line.find(&key)? + key.len();
        line[start..].split_whitespace().next()?.parse().ok()
    }

    fn ready_addr(&self) -> Option<SocketAddr> {
        self.ready_field("listen")
    }

    /// Where this start serves `/metrics`, `/healthz` and `/readyz`.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.ready_field("http")
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(addr) = self.ready_addr() {
                self.addr = addr;
                if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "broker exited during start-up with {status}:\n{}",
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!("broker not ready within 60 s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the broker printed across all its starts.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                format!(
                    "--- start {n} ---\n{}",
                    std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Where this broker keeps its data (its `--data-dir`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown hook runs, exactly like a crash of the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the clean shutdown to finish.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "broker did not stop within 60 s of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same data directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        self.spawn();
    }

    /// Starts the broker again on the same data directory and returns at once, while it
    /// recovers; [`BrokerProcess::wait_until_ready`] waits for it.
    pub fn restart_in_background(&mut self) {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        self.spawn_child();
    }

    /// Waits (up to 60 s) for the broker started last to serve clients.
    pub fn wait_until_ready(&mut self) {
        self.wait_ready();
    }

    /// The HTTP address of the start in progress, logged as soon as it is bound (before
    /// recovery), if logged yet.
    pub fn http_addr_while_starting(&self) -> Option<SocketAddr> {
        let log = std::fs::read_to_string(self.log_path(self.starts)).ok()?;
        let line = log.lines().find(|l| l.contains("http listener bound"))?;
        let start = line.find(" http=")? + " http=".len();
        line[start..].split_whitespace().next()?.parse().ok()
    }

    /// Starts the broker again on the same data directory, expecting it to end by itself
    /// during start-up (a failpoint in recovery): its exit status, or `None` if it is still
    /// running after `timeout` (then it is killed).
    pub fn restart_expecting_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        assert!(self.child.is_none(), "stop the broker before restarting it");
        self.spawn_child();
        let status = self.wait_for_exit(timeout);
        if status.is_none() {
            self.kill9();
        }
        status
    }

    /// Replaces the environment used by later restarts.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Waits up to `timeout` for the broker to exit by itself (a failpoint); its status then.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.child.as_mut()?.try_wait().ok().flatten();
            if let Some(status) = status {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}
