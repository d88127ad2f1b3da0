//! Catching a robot's panic. A robot that panics is a bug: the runtime turns it into a
//! `robot_failed` incident whose text carries the panic's message and location, logs it as a
//! warning, and goes on. Rust's default panic hook would also print "thread 'main' panicked at
//! …" on stderr as if the process had died; [`catch`] keeps that line off stderr for the panics
//! it catches, and only for those.
//!
//! The panic hook is process-wide, so it is installed once and chained: it handles a panic only
//! on a thread that is inside [`catch`] at that moment (a thread-local depth) and hands every
//! other panic, on any thread, to the hook that was there before. Threads running in parallel
//! (tests, say) keep their own panic output. A program that replaces the hook afterwards gets
//! robot panics printed again; they are still caught and journaled.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::panic::{PanicHookInfo, UnwindSafe};
use std::sync::Once;

thread_local! {
    /// How many [`catch`] calls this thread is inside.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// What the hook saw of the last panic caught on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `f`. A panic in it is not printed and comes back as `Err` with its location and
/// message (`panicked at src/x.rs:3:5: overflow`); with `RUST_BACKTRACE` set, its backtrace is
/// logged as a warning. The caller must drop or roll back whatever `f` left half done.
pub fn catch<T>(f: impl FnOnce() -> T + UnwindSafe) -> Result<T, String> {
    install();
    DEPTH.with(|d| d.set(d.get() + 1));
    CAUGHT.with(|c| c.borrow_mut().take());
    let result = std::panic::catch_unwind(f);
    DEPTH.with(|d| d.set(d.get() - 1));
    let seen = CAUGHT.with(|c| c.borrow_mut().take());
    result.map_err(|payload| seen.unwrap_or_else(|| format!("panicked: {}", text(&*payload))))
}

/// Installs the chained hook, once per process.
fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let caught = DEPTH.try_with(|d| d.get() > 0).unwrap_or(false);
            if !caught {
                return previous(info);
            }
            let what = describe(info);
            let trace = Backtrace::capture();
            if trace.status() == BacktraceStatus::Captured {
                tracing::warn!("robot {what}\n{trace}");
            }
            // Never panic inside the hook: a busy cell just loses the detail.
            let _ = CAUGHT.try_with(|c| c.try_borrow_mut().map(|mut c| *c = Some(what)));
        }));
    });
}

/// `panicked at file:line:col: message`.
fn describe(info: &PanicHookInfo<'_>) -> String {
    let message = info.payload_as_str().unwrap_or("no message");
    match info.location() {
        Some(at) => format!(
            "panicked at {}:{}:{}: {message}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("panicked: {message}"),
    }
}

/// The message of a panic payload.
fn text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
