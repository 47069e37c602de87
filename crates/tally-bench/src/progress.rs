use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on stderr fed by a shared counter; hidden when asked or when stderr is not a
/// terminal (indicatif's default).
pub struct Progress {
    bar: ProgressBar,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// `total`: messages, or `None` for a run by duration (then the bar counts seconds).
    pub fn start(
        label: &str,
        total: u64,
        duration_secs: Option<u64>,
        done: Arc<AtomicU64>,
        hidden: bool,
    ) -> Progress {
        let bar = match duration_secs {
            Some(secs) => ProgressBar::new(secs),
            None => ProgressBar::new(total),
        };
        if hidden {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let template = match duration_secs {
            Some(_) => "{prefix} [{bar:40}] {pos}/{len} s  {msg}",
            None => "{prefix} [{bar:40}] {human_pos}/{human_len}  {msg}",
        };
        bar.set_style(
            ProgressStyle::with_template(template)
                .expect("template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        let by_time = duration_secs.is_some();
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let started = std::time::Instant::now();
            let mut last = 0u64;
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let n = done.load(Ordering::Relaxed);
                if by_time {
                    b.set_position(started.elapsed().as_secs());
                } else {
                    b.set_position(n);
                }
                b.set_message(format!("{} msg/s", (n - last) * 4));
                last = n;
            }
        });
        Progress {
            bar,
            task: Some(task),
        }
    }

    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
