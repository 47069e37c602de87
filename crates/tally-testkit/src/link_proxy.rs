//! A TCP link between two processes that a test can cut and heal, to partition a network on
//! loopback. While cut, bytes in both directions vanish (as on a dead network, not a refused
//! connection: the sender waits out its own timeouts) and new connections are accepted and
//! held silent. On healing, every connection that was open during the cut is closed, since it
//! lost bytes in the middle of its frames; new connections forward again.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(50);

#[derive(Default)]
struct LinkState {
    cut: AtomicBool,
    /// Moves on every cut and heal: a connection opened in another epoch is closed once the
    /// link is whole again.
    epoch: AtomicU64,
    stopped: AtomicBool,
}

impl LinkState {
    /// Whether a connection opened in `epoch` may go on forwarding; `None` when it must close.
    fn forwarding(&self, epoch: u64) -> Option<bool> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        if self.cut.load(Ordering::Relaxed) {
            return Some(false);
        }
        (self.epoch.load(Ordering::Relaxed) == epoch).then_some(true)
    }
}

pub struct LinkProxy {
    addr: SocketAddr,
    state: Arc<LinkState>,
}

impl LinkProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<LinkProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(LinkState::default());
        let shared = Arc::clone(&state);
        thread::spawn(move || accept_loop(listener, upstream, shared));
        Ok(LinkProxy { addr, state })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing crosses the link.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::Relaxed);
        self.state.epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// The link forwards again; connections that lived through the cut are closed.
    pub fn heal(&self) {
        self.state.epoch.fetch_add(1, Ordering::Relaxed);
        self.state.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Relaxed);
    }
}

fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<LinkState>) {
    while !state.stopped.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((client, _)) => {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    let _ = connect(client, upstream, &state);
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

fn connect(client: TcpStream, upstream: SocketAddr, state: &Arc<LinkState>) -> io::Result<()> {
    client.set_nonblocking(false)?;
    let epoch = state.epoch.load(Ordering::Relaxed);
    if state.cut.load(Ordering::Relaxed) {
        // Accepted by the kernel anyway; the peer hears nothing until the link heals.
        return pump(client.try_clone()?, None, state, epoch);
    }
    let server = TcpStream::connect_timeout(&upstream, Duration::from_secs(1))?;
    server.set_nodelay(true)?;
    client.set_nodelay(true)?;
    let (c2, s2) = (client.try_clone()?, server.try_clone()?);
    let back = Arc::clone(state);
    thread::spawn(move || {
        let _ = pump(s2, Some(c2), &back, epoch);
    });
    pump(client, Some(server), state, epoch)
}

/// Copies `from` to `to` while the link forwards, drops what arrives while it is cut, and
/// closes both ends when the connection's epoch has passed or either end closes.
fn pump(
    mut from: TcpStream,
    mut to: Option<TcpStream>,
    state: &LinkState,
    epoch: u64,
) -> io::Result<()> {
    from.set_read_timeout(Some(POLL))?;
    let mut buf = vec![0u8; 64 << 10];
    let result = loop {
        let Some(forwarding) = state.forwarding(epoch) else {
            break Ok(());
        };
        match from.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if forwarding {
                    if let Some(to) = to.as_mut() {
                        if let Err(e) = to.write_all(&buf[..n]) {
                            break Err(e);
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => break Err(e),
        }
    };
    let _ = from.shutdown(Shutdown::Both);
    if let Some(to) = to {
        let _ = to.shutdown(Shutdown::Both);
    }
    result
}
