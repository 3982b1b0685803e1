//! Catching a panic without the panic hook printing it: for polars calls on malformed files,
//! whose panics become errors (see `io::guard_panic`).
//!
//! `std::panic::catch_unwind` stops the unwind, but the process-wide panic hook has already
//! printed "thread '…' panicked at …" (and a backtrace under `RUST_BACKTRACE`) by then. While a
//! [`catch_quietly`] call runs, the hook is wrapped: a panic on a thread inside such a call is
//! not printed, and every other panic goes to the previous hook unchanged. When the last call
//! in flight ends, the previous hook is put back. Only panics on the calling thread are
//! silenced, so a polars call that panics on polars' own worker threads still prints; the
//! Parquet reader is run single-threaded for this reason. A hook set by someone else while calls
//! are in flight is kept (and prints quieted panics until those calls end).

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::{Arc, Mutex, PoisonError};

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The hooks while [`catch_quietly`] calls are in flight.
struct Installed {
    /// Calls in flight, on all threads.
    depth: usize,
    /// The hook found when the first call began, restored when the last ends.
    previous: Option<Arc<Hook>>,
    /// Address of the wrapping hook, to tell whether someone replaced it meanwhile.
    wrapper: usize,
}

static INSTALLED: Mutex<Installed> = Mutex::new(Installed {
    depth: 0,
    previous: None,
    wrapper: 0,
});

thread_local! {
    /// Whether this thread is inside a [`catch_quietly`] call.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// `catch_unwind(f)`, with a panic inside `f` on this thread left unprinted. The caller reports
/// the payload instead. The closure's state is discarded on panic, which makes asserting unwind
/// safety sound for callers that drop it.
pub(crate) fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, Box<dyn Any + Send>> {
    // The hook cannot be changed while this thread unwinds (a drop during a panic).
    if std::thread::panicking() {
        return panic::catch_unwind(AssertUnwindSafe(f));
    }
    enter();
    let was_quiet = QUIET.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.set(was_quiet);
    leave();
    result
}

fn lock() -> std::sync::MutexGuard<'static, Installed> {
    INSTALLED.lock().unwrap_or_else(PoisonError::into_inner)
}

fn enter() {
    let mut installed = lock();
    if installed.depth == 0 {
        let previous = Arc::new(panic::take_hook());
        let inner = Arc::clone(&previous);
        let wrapper: Hook = Box::new(move |info| {
            if !QUIET.try_with(Cell::get).unwrap_or(false) {
                inner(info);
            }
        });
        installed.wrapper = address(&wrapper);
        installed.previous = Some(previous);
        panic::set_hook(wrapper);
    }
    installed.depth += 1;
}

fn leave() {
    let mut installed = lock();
    installed.depth -= 1;
    if installed.depth > 0 {
        return;
    }
    let current = panic::take_hook();
    let Some(previous) = installed.previous.take() else {
        return panic::set_hook(current);
    };
    if address(&current) != installed.wrapper {
        // Someone set a hook meanwhile: theirs stays.
        return panic::set_hook(current);
    }
    drop(current); // the wrapper, and with it its share of `previous`
    match Arc::try_unwrap(previous) {
        Ok(hook) => panic::set_hook(hook),
        Err(shared) => panic::set_hook(Box::new(move |info| shared(info))),
    }
}

/// Where a hook's closure lives (its captures make it non-zero-sized, so the address is its
/// own while it lives).
fn address(hook: &Hook) -> usize {
    std::ptr::from_ref::<dyn Fn(&PanicHookInfo<'_>) + Sync + Send>(hook.as_ref())
        .cast::<()>()
        .addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_is_returned_as_its_payload() {
        let payload = catch_quietly(|| panic!("quiet")).unwrap_err();
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"quiet"));
        let nested = catch_quietly(|| catch_quietly(|| panic!("inner")).is_err());
        assert_eq!(nested.ok(), Some(true));
        assert_eq!(catch_quietly(|| 7).ok(), Some(7));
    }
}
