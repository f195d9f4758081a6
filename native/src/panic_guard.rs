//! One bad input must not take down a whole run: work on one row (one CIF, one structure) runs
//! under [`guarded`], which turns a panic anywhere inside it, a dependency's included, into that
//! row's error, with the panic's message and place.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    /// The last panic's message and location on this thread, recorded by the quiet hook.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook, as `std::panic::take_hook` returns it.
type PanicHook = Box<dyn Fn(&panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Replaces the panic hook for the guard's lifetime: a caught panic is recorded rather than
/// printed over the progress bar. The previous hook comes back on drop.
pub struct QuietPanics {
    previous: Option<PanicHook>,
}

impl QuietPanics {
    pub fn install() -> Self {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(|info| {
            let text = info.to_string();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(text));
        }));
        Self {
            previous: Some(previous),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            panic::set_hook(previous);
        }
    }
}

/// Runs `work`; a panic inside becomes `Err("internal error: …")`.
pub fn guarded<T>(work: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    LAST_PANIC.with(|p| p.borrow_mut().take());
    match panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
            let message = recorded.unwrap_or_else(|| {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic without a message".into())
            });
            Err(format!(
                "internal error while reading this row (please report it): {}",
                message.replace('\n', " ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_the_rows_error_and_the_hook_comes_back() {
        {
            let _quiet = QuietPanics::install();
            let r: Result<(), String> = guarded(|| panic!("deep inside a dependency"));
            let e = r.unwrap_err();
            assert!(e.contains("deep inside a dependency"), "{e}");
            assert!(e.contains("panic_guard.rs"), "{e}");
            assert_eq!(guarded(|| Ok::<_, String>(3)), Ok(3));
        }
        // Without the quiet hook the message still comes from the payload.
        let e = guarded::<()>(|| std::panic::panic_any(String::from("owned message"))).unwrap_err();
        assert!(e.contains("owned message"), "{e}");
    }
}
