//! The async runtime Tally gives openraft: tokio's, with the randomness openraft draws
//! (election timeouts, tick jitter) taken from a seed when the caller gives one.
//!
//! Why: a simulation seed must replay exactly, and openraft's tokio runtime draws from an
//! unseeded thread-local generator. A replica opened inside [`SeededRuntime::scope`] passes
//! its seed down to every task openraft spawns for it; each draw advances it. Outside a scope
//! (a server, or a call made from a task of our own) it draws from a random seed, as before,
//! instead of failing. openraft-rt's `DeterministicRng` does the first half but requires the
//! scope everywhere.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::time::Duration;

use openraft_rt::{AsyncRuntime, OptionalSend, Select2, Select3, Select4};
use openraft_rt_tokio::TokioRuntime;
use rand010::rngs::SmallRng;
use rand010::SeedableRng;

openraft_rt::task_local! {
    static SEED: Cell<u64>;
}

/// SplitMix64's mixer: each step of a seed, and a child task's seed from its parent's, with
/// different constants so that the two sequences do not meet.
pub(crate) fn mix(seed: u64, gamma: u64) -> u64 {
    let z = seed.wrapping_add(gamma);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const STEP: u64 = 0x6a09_e667_f3bc_c908;
const CHILD: u64 = 0x9e37_79b9_7f4a_7c15;

/// The current task's seed, advanced; `None` outside a scope.
fn next_seed() -> Option<u64> {
    SEED.try_with(|c| {
        let seed = c.get();
        c.set(mix(seed, STEP));
        seed
    })
    .ok()
}

#[derive(Debug)]
pub struct SeededRuntime {
    inner: TokioRuntime,
}

impl SeededRuntime {
    /// Runs `f` (opening a replica's Raft) with `seed` as the seed of every draw it and the
    /// tasks it spawns make.
    pub fn scope<F: Future>(seed: u64, f: F) -> impl Future<Output = F::Output> {
        SEED.scope(Cell::new(seed), f)
    }
}

impl AsyncRuntime for SeededRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;
    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        match next_seed() {
            Some(seed) => TokioRuntime::spawn(SEED.scope(Cell::new(mix(seed, CHILD)), future)),
            None => TokioRuntime::spawn(future),
        }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F>(duration: Duration, future: F) -> Self::Timeout<R, F>
    where
        F: Future<Output = R> + OptionalSend,
    {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F>
    where
        F: Future<Output = R> + OptionalSend,
    {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn select2<A, B>(
        a: A,
        b: B,
    ) -> impl Future<Output = Select2<A::Output, B::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
    {
        TokioRuntime::select2(a, b)
    }

    fn select3<A, B, C>(
        a: A,
        b: B,
        c: C,
    ) -> impl Future<Output = Select3<A::Output, B::Output, C::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
    {
        TokioRuntime::select3(a, b, c)
    }

    fn select4<A, B, C, D>(
        a: A,
        b: B,
        c: C,
        d: D,
    ) -> impl Future<Output = Select4<A::Output, B::Output, C::Output, D::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
        D: Future + OptionalSend,
    {
        TokioRuntime::select4(a, b, c, d)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        match next_seed() {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => rand010::make_rng(),
        }
    }

    fn new(threads: usize) -> Self {
        SeededRuntime {
            inner: TokioRuntime::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        TokioRuntime::spawn_blocking(f)
    }
}
