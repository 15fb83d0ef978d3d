//! Waiting for a condition: poll with a deadline, never a bare sleep.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

const INTERVAL: Duration = Duration::from_millis(100);

/// What a check returns: `Some`/`Ok` when ready; `None`, or `Err(why not yet)` so the
/// panic at the deadline can say what was last seen.
pub trait Check<T> {
    fn ready(self) -> Result<T, Option<String>>;
}

impl<T> Check<T> for Option<T> {
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Check<T> for Result<T, E> {
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

fn give_up(what: &str, timeout: Duration, last: Option<String>) -> ! {
    match last {
        Some(last) => panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}"),
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// Polls `f` until it is ready, at most for `timeout`; panics naming `what`.
pub fn eventually<T, C: Check<T>>(what: &str, timeout: Duration, mut f: impl FnMut() -> C) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f().ready() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => give_up(what, timeout, last),
            Err(_) => std::thread::sleep(INTERVAL),
        }
    }
}

/// [`eventually`] for async checks, polling without blocking the runtime.
pub async fn eventually_async<T, C, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    C: Check<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match f().await.ready() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => give_up(what, timeout, last),
            Err(_) => tokio::time::sleep(INTERVAL).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut n = 0;
        let v = eventually("the third try", Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some(n)
        });
        assert_eq!(v, 3);
    }

    #[test]
    #[should_panic(expected = "timed out after 300ms waiting for never")]
    fn panics_at_the_deadline() {
        eventually::<(), Option<()>>("never", Duration::from_millis(300), || None);
    }

    #[test]
    #[should_panic(expected = "waiting for a count; last seen: 3 of 5")]
    fn the_panic_says_what_was_last_seen() {
        eventually::<(), _>("a count", Duration::from_millis(300), || Err::<(), _>("3 of 5"));
    }

    #[tokio::test]
    async fn async_checks() {
        let mut n = 0;
        let v = eventually_async("the second try", Duration::from_secs(5), || {
            n += 1;
            let ready = n == 2;
            async move { ready.then_some("ok") }
        })
        .await;
        assert_eq!(v, "ok");
    }
}
