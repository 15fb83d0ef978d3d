//! Polling with a deadline: EC2 state changes are asynchronous and AWS recommends
//! polling Describe* with backoff rather than assuming a fixed delay.

use crate::ProviderError;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Calls `check` until it returns `Some`, an error, or `timeout` passes (then
/// `Transient`, so the caller retries the whole idempotent call later).
pub(crate) async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, ProviderError>>,
{
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_PAUSE;
    loop {
        if let Some(done) = check().await? {
            return Ok(done);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ProviderError::Transient(format!("timed out after {}s waiting for {what}", timeout.as_secs())));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_value_and_times_out() {
        let mut calls = 0;
        let got = until("three calls", Duration::from_secs(5), || {
            calls += 1;
            let n = calls;
            async move { Ok((n == 3).then_some(n)) }
        })
        .await
        .unwrap();
        assert_eq!(got, 3);

        let err = until("never", Duration::from_millis(300), || async { Ok::<Option<()>, _>(None) }).await.unwrap_err();
        assert!(matches!(err, ProviderError::Transient(_)), "{err:?}");
    }
}
