//! One lock per job under `_etl/locks/<job>`, created with a conditional put (`If-None-Match: *`
//! on S3) so that two runs of the same job never write at once. A lock records its owner and an
//! expiry; a lock past its expiry (a crashed run) is taken over with a compare-and-swap on its
//! ETag, so two runs taking over at once cannot both win.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::store::Conditional;
use super::{Location, StoreError};

/// What a lock object holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Host and process of the holder.
    pub owner: String,
    /// When the holder started.
    pub started_at: DateTime<Utc>,
    /// After this instant the lock is stale and may be taken over.
    pub expires_at: DateTime<Utc>,
    /// What the holder runs.
    pub command: String,
}

/// Lock errors.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another run holds the lock.
    #[error("job {job} is running elsewhere (owner {}, since {}, lock expires {}); nothing done", .info.owner, .info.started_at.format("%Y-%m-%dT%H:%M:%SZ"), .info.expires_at.format("%Y-%m-%dT%H:%M:%SZ"))]
    Held {
        /// The job.
        job: String,
        /// The holder.
        info: LockInfo,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Key of a job's lock.
pub fn lock_key(job: &str) -> String {
    format!("_etl/locks/{job}")
}

/// A held lock; release it with [`JobLock::release`].
pub struct JobLock {
    lake: Location,
    key: String,
    /// What the lock says.
    pub info: LockInfo,
    /// Whether a stale lock was taken over.
    pub took_over: Option<LockInfo>,
}

fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host} pid {}", std::process::id())
}

/// Takes the lock of `job` for `ttl`, or says who holds it.
pub async fn acquire(
    lake: &Location,
    job: &str,
    ttl: Duration,
    command: &str,
) -> Result<JobLock, LockError> {
    let key = lock_key(job);
    let now = Utc::now();
    let info = LockInfo {
        owner: owner(),
        started_at: now,
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(3)),
        command: command.to_string(),
    };
    let body = Bytes::from(serde_json::to_vec_pretty(&info).expect("lock serializes"));
    let held = |info: LockInfo| LockError::Held {
        job: job.to_string(),
        info,
    };
    for _ in 0..3 {
        if lake.create(&key, body.clone()).await? == Conditional::Written {
            return Ok(JobLock {
                lake: lake.clone(),
                key,
                info,
                took_over: None,
            });
        }
        let Some((bytes, version)) = lake.get_versioned(&key).await? else {
            continue; // released in between: try again
        };
        let current: LockInfo = match serde_json::from_slice(&bytes) {
            Ok(c) => c,
            // An unreadable lock is treated as stale (it expired in every sense).
            Err(_) => LockInfo {
                owner: "unreadable lock".into(),
                started_at: now,
                expires_at: now - chrono::Duration::seconds(1),
                command: String::new(),
            },
        };
        if current.expires_at > now {
            return Err(held(current));
        }
        match lake.replace_if(&key, body.clone(), version).await? {
            Conditional::Written => {
                return Ok(JobLock {
                    lake: lake.clone(),
                    key,
                    info,
                    took_over: Some(current),
                })
            }
            Conditional::Conflict => continue,
            // No compare-and-swap (local folder): delete and create; a concurrent taker-over
            // loses at the create.
            Conditional::Unsupported => {
                lake.delete(&key).await?;
                if lake.create(&key, body.clone()).await? == Conditional::Written {
                    return Ok(JobLock {
                        lake: lake.clone(),
                        key,
                        info,
                        took_over: Some(current),
                    });
                }
            }
        }
    }
    match lake.get(&key).await? {
        Some(bytes) => Err(held(serde_json::from_slice(&bytes).unwrap_or(info))),
        None => Err(held(info)),
    }
}

impl JobLock {
    /// Keeps the lock alive while the run goes on: every `ttl / 3` its expiry moves to now +
    /// `ttl`, so a short TTL is safe for long runs and a crashed run's lock goes stale quickly.
    /// Abort the returned task when the run ends.
    pub fn keep_alive(&self, ttl: Duration) -> tokio::task::JoinHandle<()> {
        let (lake, key, mut info) = (self.lake.clone(), self.key.clone(), self.info.clone());
        let ttl_chrono = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::minutes(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                info.expires_at = Utc::now() + ttl_chrono;
                let body = Bytes::from(serde_json::to_vec_pretty(&info).expect("lock serializes"));
                if let Err(e) = lake.put(&key, body).await {
                    tracing::warn!(key = %key, error = %e, "could not refresh the job lock");
                }
            }
        })
    }

    /// Releases the lock (deletes it, if it is still ours).
    pub async fn release(self) -> Result<(), StoreError> {
        if let Some(bytes) = self.lake.get(&self.key).await? {
            let current: Option<LockInfo> = serde_json::from_slice(&bytes).ok();
            let ours = current.as_ref().is_some_and(|c| {
                c.owner == self.info.owner && c.started_at == self.info.started_at
            });
            if !ours {
                tracing::warn!(key = %self.key, "the lock was taken over while this run held it (run longer than its TTL?)");
                return Ok(());
            }
        }
        self.lake.delete(&self.key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::Access;

    #[tokio::test]
    async fn second_acquire_is_refused_and_a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let lake = Location::open(&url, None, Access::Create).await.unwrap();
        let first = acquire(&lake, "job", Duration::from_secs(60), "run a")
            .await
            .unwrap();
        let err = acquire(&lake, "job", Duration::from_secs(60), "run b")
            .await
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("job job is running elsewhere"),
            "{err}"
        );
        first.release().await.unwrap();
        let again = acquire(&lake, "job", Duration::from_secs(0), "run c")
            .await
            .unwrap();
        assert!(again.took_over.is_none());
        // `again` expired at once: a crashed run's lock.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taker = acquire(&lake, "job", Duration::from_secs(60), "run d")
            .await
            .unwrap();
        assert_eq!(taker.took_over.as_ref().unwrap().command, "run c");
        taker.release().await.unwrap();
        assert!(lake.get(&lock_key("job")).await.unwrap().is_none());
    }
}
