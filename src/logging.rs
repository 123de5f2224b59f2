//! Log lines in env_logger's layout (`[2026-11-26T10:31:20Z INFO  aishacrm::cache] message`),
//! filtered by `RUST_LOG` through env_logger, written by a background thread so that a request
//! that logs (every cache hit does, at `info`) never waits for stderr.
//!
//! Each thread appends its formatted lines to a buffer of its own; the writer thread takes every
//! buffer each few milliseconds and writes it out. A line costs its formatting and an append
//! under a lock only the writer ever shares: no allocation, no queue, and no lock that the HTTP
//! workers contend for (a global writer lock and a queue send per line had made hit logging cost
//! 10-20 % of L1-hit throughput). A buffer that the writer cannot keep up with stops growing at
//! [`BUFFER_MAX`]: further lines are dropped and counted, and the writer reports them as
//! `[log] N lines dropped`.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::{Level, Log, Metadata, Record};

/// Bytes one thread's buffer may hold before its lines are dropped.
const BUFFER_MAX: usize = 8 * 1024 * 1024;

/// How often the writer thread takes the buffers. It polls rather than being woken so that a
/// logging thread never pays for a wake-up.
const POLL: Duration = Duration::from_millis(5);

/// One thread's lines not yet written.
#[derive(Default)]
struct Buffer {
    lines: Mutex<Vec<u8>>,
    dropped: AtomicU64,
}

impl Buffer {
    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a whole line, or counts it as dropped when the buffer is full.
    fn append(&self, line: &[u8], max: usize) {
        let mut lines = self.lock();
        if lines.len() + line.len() > max {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            lines.extend_from_slice(line);
        }
    }
}

/// Every thread's buffer, for the writer.
static BUFFERS: Mutex<Vec<Arc<Buffer>>> = Mutex::new(Vec::new());
/// Held while buffers are taken and written, so that [`flush`] waits for a batch in flight.
static DRAINING: Mutex<()> = Mutex::new(());
/// Whether the writer thread runs (without it, lines go straight to stderr).
static WRITER: AtomicBool = AtomicBool::new(false);

fn buffers() -> MutexGuard<'static, Vec<Arc<Buffer>>> {
    BUFFERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

thread_local! {
    static OWN: Arc<Buffer> = {
        let buffer = Arc::new(Buffer::default());
        buffers().push(buffer.clone());
        buffer
    };
    /// The line being formatted, and the timestamp text of the last second a line was stamped.
    static SCRATCH: RefCell<(Vec<u8>, Stamp)> = RefCell::new((Vec::with_capacity(256), Stamp::default()));
}

/// `2026-11-26T10:31:20Z`, formatted once per second per thread.
#[derive(Default)]
struct Stamp {
    second: u64,
    text: String,
}

impl Stamp {
    fn at(&mut self, second: u64) -> &str {
        if self.text.is_empty() || self.second != second {
            self.second = second;
            self.text = i64::try_from(second)
                .ok()
                .and_then(|second| chrono::DateTime::from_timestamp(second, 0))
                .map(|time| time.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
        }
        &self.text
    }
}

/// Writes `record` as one line in env_logger's layout.
fn format(out: &mut Vec<u8>, stamp: &mut Stamp, second: u64, record: &Record) -> io::Result<()> {
    let level = match record.level() {
        Level::Error => "ERROR",
        Level::Warn => "WARN ",
        Level::Info => "INFO ",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    };
    writeln!(
        out,
        "[{} {level} {}] {}",
        stamp.at(second),
        record.target(),
        record.args()
    )
}

fn unix_second() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs())
        .unwrap_or(0)
}

/// The installed logger: env_logger's `RUST_LOG` filter in front of the per-thread buffers.
struct Buffered {
    filter: env_logger::Logger,
}

impl Log for Buffered {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        // actix-http reports every malformed or slow request it answers itself (400, 408, 431)
        // as an ERROR: any client could fill the error log. They are the client's errors, so
        // they are logged at debug.
        if record.level() == Level::Error && record.target().starts_with(CLIENT_ERRORS) {
            let demoted = Record::builder()
                .level(Level::Debug)
                .target(record.target())
                .args(*record.args())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build();
            if self.filter.matches(&demoted) {
                self.write(&demoted);
            }
            return;
        }
        if !self.filter.matches(record) {
            return;
        }
        self.write(record);
    }

    fn flush(&self) {
        drain();
    }
}

/// The target of actix-http's reports of requests it refused before the application saw them.
const CLIENT_ERRORS: &str = "actix_http::h1::dispatcher";

impl Buffered {
    fn write(&self, record: &Record) {
        let buffered = SCRATCH.try_with(|scratch| {
            // A value whose formatting logs again finds the scratch busy: that inner line goes
            // straight to stderr instead of deadlocking.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return false;
            };
            let (line, stamp) = &mut *scratch;
            line.clear();
            if format(line, stamp, unix_second(), record).is_err() {
                return true;
            }
            let appended = WRITER.load(Ordering::Acquire)
                && OWN.try_with(|own| own.append(line, BUFFER_MAX)).is_ok();
            if !appended {
                let _ = io::stderr().write_all(line);
            }
            true
        });
        // Also while the thread is being torn down (its buffers are gone).
        if buffered != Ok(true) {
            let mut line = Vec::new();
            if format(&mut line, &mut Stamp::default(), unix_second(), record).is_ok() {
                let _ = io::stderr().write_all(&line);
            }
        }
    }
}

/// Writes out every buffer's lines (and the count of any dropped), oldest buffers first.
fn drain() {
    let _draining = DRAINING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let all: Vec<Arc<Buffer>> = buffers().clone();
    let mut batch = Vec::new();
    let mut stderr = io::stderr().lock();
    for buffer in &all {
        std::mem::swap(&mut *buffer.lock(), &mut batch);
        let _ = stderr.write_all(&batch);
        batch.clear();
        let lost = buffer.dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                stderr,
                "[log] {lost} lines dropped: the log buffer was full"
            );
        }
    }
    let _ = stderr.flush();
    drop(stderr);
    drop(all);
    // Buffers of threads that have ended (the list holds the only reference) and are empty.
    buffers().retain(|buffer| Arc::strong_count(buffer) > 1 || !buffer.lock().is_empty());
}

/// Writes out the lines logged so far; call before the process exits.
pub fn flush() {
    drain();
}

/// Installs the logger (`RUST_LOG`, default `info`) and starts its writer thread.
pub fn init() {
    let filter =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max_level = filter.filter();
    let spawned = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(|| loop {
            std::thread::sleep(POLL);
            drain();
        });
    WRITER.store(spawned.is_ok(), Ordering::Release);
    if log::set_boxed_logger(Box::new(Buffered { filter })).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(level: Level, target: &str, second: u64, message: std::fmt::Arguments) -> String {
        let record = Record::builder()
            .level(level)
            .target(target)
            .args(message)
            .build();
        let mut out = Vec::new();
        format(&mut out, &mut Stamp::default(), second, &record).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_keep_env_loggers_layout() {
        // 2026-11-26T10:31:20Z
        let second = 1_795_689_080;
        assert_eq!(
            line(
                Level::Info,
                "aishacrm::cache",
                second,
                format_args!("[Cache] Hit: x")
            ),
            "[2026-11-26T10:31:20Z INFO  aishacrm::cache] [Cache] Hit: x\n"
        );
        assert_eq!(
            line(Level::Error, "t", second + 61, format_args!("{}", 5)),
            "[2026-11-26T10:32:21Z ERROR t] 5\n"
        );
    }

    #[test]
    fn the_stamp_follows_the_clock_second_by_second() {
        let mut stamp = Stamp::default();
        assert_eq!(stamp.at(0), "1970-01-01T00:00:00Z");
        assert_eq!(stamp.at(0), "1970-01-01T00:00:00Z");
        assert_eq!(stamp.at(86_399), "1970-01-01T23:59:59Z");
    }

    #[test]
    fn a_full_buffer_drops_whole_lines_and_counts_them() {
        let buffer = Buffer::default();
        buffer.append(b"first line\n", 24);
        buffer.append(b"second line\n", 24);
        buffer.append(b"third line\n", 24);
        assert_eq!(&*buffer.lock(), b"first line\nsecond line\n");
        assert_eq!(buffer.dropped.load(Ordering::Relaxed), 1);
    }
}
