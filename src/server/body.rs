//! Reading an authenticated webhook body: at most `limit` bytes, within `timeout`, and only
//! while the memory of all bodies in flight stays within a shared budget.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits on request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest accepted body in bytes.
    pub limit: usize,
    /// Bytes of bodies held in memory at once, over all requests (503 with `Retry-After`
    /// past it). At least `limit`.
    pub budget: usize,
    /// Longest time to receive a body once its headers are in.
    pub timeout: Duration,
}

impl BodyLimits {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            budget: (2 * limit).max(64 * 1024 * 1024),
            timeout: Duration::from_secs(60),
        }
    }
}

/// The shared memory budget of bodies in flight, in bytes.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(budget: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(budget.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes of the budget not in use.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    fn take(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n).ok()?;
        self.bytes.clone().try_acquire_many_owned(n).ok()
    }
}

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than the limit")]
    TooLarge,
    #[error("the memory budget for request bodies is in use")]
    OverBudget,
    #[error("request body not received in time")]
    Timeout,
    #[error("request body could not be read")]
    Read,
}

/// A body read into memory, holding its share of the budget until dropped.
#[derive(Debug)]
pub struct HeldBody {
    pub bytes: Vec<u8>,
    _budget: Option<OwnedSemaphorePermit>,
}

/// Reads `body`. With a `Content-Length`, its whole size is reserved from the budget before
/// anything is read; without one, each chunk is reserved as it arrives.
pub async fn read(
    body: axum::body::Body,
    content_length: Option<u64>,
    limits: &BodyLimits,
    budget: &BodyBudget,
) -> Result<HeldBody, BodyError> {
    let mut held: Option<OwnedSemaphorePermit> = None;
    let mut bytes = Vec::new();
    if let Some(n) = content_length {
        let n = usize::try_from(n).map_err(|_| BodyError::TooLarge)?;
        if n > limits.limit {
            return Err(BodyError::TooLarge);
        }
        held = Some(budget.take(n).ok_or(BodyError::OverBudget)?);
        bytes.reserve_exact(n);
    }
    let reserved = content_length.is_some();
    let receive = async {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Read)?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers
            };
            if bytes.len() + chunk.len() > limits.limit {
                return Err(BodyError::TooLarge);
            }
            if !reserved {
                let more = budget.take(chunk.len()).ok_or(BodyError::OverBudget)?;
                match held.as_mut() {
                    Some(h) => h.merge(more),
                    None => held = Some(more),
                }
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(())
    };
    tokio::time::timeout(limits.timeout, receive)
        .await
        .map_err(|_| BodyError::Timeout)??;
    Ok(HeldBody {
        bytes,
        _budget: held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(limit: usize, budget: usize) -> BodyLimits {
        BodyLimits {
            limit,
            budget,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn bodies_share_one_budget_and_give_it_back() {
        let l = limits(100, 150);
        let budget = BodyBudget::new(l.budget);
        let first = read(
            axum::body::Body::from(vec![b'a'; 100]),
            Some(100),
            &l,
            &budget,
        )
        .await
        .expect("fits");
        assert_eq!(first.bytes.len(), 100);
        assert_eq!(budget.available(), 50);
        // Declared and chunked bodies are both held to what is left.
        assert_eq!(
            read(
                axum::body::Body::from(vec![b'b'; 60]),
                Some(60),
                &l,
                &budget
            )
            .await
            .unwrap_err(),
            BodyError::OverBudget
        );
        assert_eq!(
            read(axum::body::Body::from(vec![b'b'; 60]), None, &l, &budget)
                .await
                .unwrap_err(),
            BodyError::OverBudget
        );
        drop(first);
        assert_eq!(budget.available(), 150);
        assert_eq!(
            read(axum::body::Body::from(vec![b'c'; 101]), None, &l, &budget)
                .await
                .unwrap_err(),
            BodyError::TooLarge
        );
        assert_eq!(
            read(axum::body::Body::empty(), Some(101), &l, &budget)
                .await
                .unwrap_err(),
            BodyError::TooLarge
        );
        assert_eq!(budget.available(), 150);
    }
}
