//! The broker process's own resources, read from `/proc/self` at scrape time (Linux; zeros
//! elsewhere).

use std::fs;

#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessSample {
    pub resident_bytes: i64,
    pub open_fds: i64,
    pub threads: i64,
    pub cpu_seconds: f64,
}

pub fn sample() -> ProcessSample {
    let mut s = ProcessSample::default();
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        for line in status.lines() {
            let value = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            };
            if line.starts_with("VmRSS:") {
                s.resident_bytes = value(line) * 1024;
            } else if line.starts_with("Threads:") {
                s.threads = value(line);
            }
        }
    }
    s.open_fds = fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as i64);
    if let Ok(stat) = fs::read_to_string("/proc/self/stat") {
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 14th and 15th fields of the line, in clock ticks.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| {
                fields
                    .get(i)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            // SAFETY: a plain query of a system constant.
            let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
            s.cpu_seconds = (ticks(11) + ticks(12)) as f64 / per_second;
        }
    }
    s
}
