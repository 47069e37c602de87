//! Where a replica's blocking file I/O runs: tokio's blocking pool (a server), or inline on
//! the task that asked (a simulation). Why inline there: a pool thread finishes after a real
//! time, not a simulated one, so when it answers (and with it the order of everything after)
//! would depend on the machine's load, and a seed's run could not be replayed exactly.

use std::io;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BlockingIo {
    /// `tokio::task::spawn_blocking`.
    #[default]
    Pool,
    /// On the calling task (a simulation's runtime, which has no other tasks to stall).
    Inline,
}

impl BlockingIo {
    /// Runs `f` where this mode says.
    pub async fn run<T: Send + 'static>(
        self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<T> {
        match self {
            BlockingIo::Pool => tokio::task::spawn_blocking(f)
                .await
                .map_err(io::Error::other),
            BlockingIo::Inline => Ok(f()),
        }
    }

    /// Runs `f` where this mode says without waiting for it: for clean-up from a `Drop`, which
    /// cannot wait (and may run on an async worker when a task is cancelled). Outside a
    /// runtime it runs inline.
    pub fn detach(self, f: impl FnOnce() + Send + 'static) {
        match (self, tokio::runtime::Handle::try_current()) {
            (BlockingIo::Pool, Ok(handle)) => drop(handle.spawn_blocking(f)),
            _ => f(),
        }
    }
}
