//! One lock per job under `_etl/locks/<job>`, created with a conditional put (`If-None-Match: *`
//! on S3) so that two runs of the same job never write at once. A lock records its owner, an
//! expiry and a token drawn afresh by each run; a lock past its expiry (a crashed run) is taken
//! over with a compare-and-swap on its ETag, so two runs taking over at once cannot both win.
//!
//! The token makes taking and releasing safe to retry. When the answer to a conditional put is
//! lost after the store applied it (a connection reset, a 500 after the write), the client's
//! retry meets the lock its own first attempt wrote ("already exists", or "precondition failed"
//! for a takeover); the run reads the lock back and, finding its token, holds it. A lock step
//! that fails with a store error removes the lock if it turns out to be this run's, so a failed
//! run does not leave one behind. Releasing reads the lock and deletes it only if it holds this
//! run's token, retrying a few times with backoff.

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
    /// Drawn at random by each run when it takes the lock: how a run recognises its own lock
    /// (empty in locks written by older versions, which no run takes for its own).
    #[serde(default)]
    pub token: String,
}

impl LockInfo {
    fn is_ours(&self, token: &str) -> bool {
        !token.is_empty() && self.token == token
    }
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

/// A token unique to one lock attempt: 128 bits from the standard library's randomly seeded
/// hasher keys, mixed with the clock and the process id.
fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut halves = [0u64; 2];
    for (i, half) in halves.iter_mut().enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.write_usize(i);
        *half = hasher.finish();
    }
    format!("{:016x}{:016x}", halves[0], halves[1])
}

/// Attempts at reading and deleting a lock (release, and cleanup after a failed lock step).
const DELETE_ATTEMPTS: u32 = 5;
/// Wait before the second attempt; it doubles after each failed one.
const DELETE_BACKOFF: Duration = Duration::from_millis(200);

/// Takes the lock of `job` for `ttl`, or says who holds it.
///
/// A store error fails the lock step; before returning it, the run removes the lock if it is
/// its own (the failed request may have been applied), so no lock of a failed run is left.
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
        token: new_token(),
    };
    match take(lake, job, &key, &info).await {
        Ok(took_over) => Ok(JobLock {
            lake: lake.clone(),
            key,
            info,
            took_over,
        }),
        Err(LockError::Store(e)) => {
            match delete_if_ours(lake, &key, &info.token).await {
                Ok(Deleted::Ours) => {
                    tracing::warn!(key = %key, "the lock step failed after writing this run's lock; removed it")
                }
                Ok(_) => {}
                Err(cleanup) => {
                    tracing::warn!(key = %key, error = %cleanup, "the lock step failed and whether it left this run's lock cannot be checked; a lock left behind expires on its own")
                }
            }
            Err(LockError::Store(e))
        }
        Err(held) => Err(held),
    }
}

/// Writes the lock (creating it, or taking over a stale one); the stale lock replaced, if any.
async fn take(
    lake: &Location,
    job: &str,
    key: &str,
    info: &LockInfo,
) -> Result<Option<LockInfo>, LockError> {
    let now = info.started_at;
    let body = Bytes::from(serde_json::to_vec_pretty(info).expect("lock serializes"));
    let held = |info: LockInfo| LockError::Held {
        job: job.to_string(),
        info,
    };
    // The stale lock this run tried to replace: if the replacement's answer was lost, the run
    // finds its own lock on the next round and reports the takeover all the same.
    let mut stale: Option<LockInfo> = None;
    for _ in 0..3 {
        if lake.create(key, body.clone()).await? == Conditional::Written {
            return Ok(None);
        }
        let Some((bytes, version)) = lake.get_versioned(key).await? else {
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
                token: String::new(),
            },
        };
        // "Already exists" answered to a retry of our own write whose first answer was lost.
        if current.is_ours(&info.token) {
            return Ok(stale);
        }
        if current.expires_at > now {
            return Err(held(current));
        }
        stale = Some(current.clone());
        match lake.replace_if(key, body.clone(), version).await? {
            Conditional::Written => return Ok(Some(current)),
            Conditional::Conflict => continue,
            // No compare-and-swap (local folder): delete and create; a concurrent taker-over
            // loses at the create.
            Conditional::Unsupported => {
                lake.delete(key).await?;
                if lake.create(key, body.clone()).await? == Conditional::Written {
                    return Ok(Some(current));
                }
            }
        }
    }
    match lake.get(key).await? {
        Some(bytes) => match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(current) if current.is_ours(&info.token) => Ok(stale),
            Ok(current) => Err(held(current)),
            Err(_) => Err(held(info.clone())),
        },
        None => Err(held(info.clone())),
    }
}

/// What [`delete_if_ours`] found.
#[derive(Debug, PartialEq, Eq)]
enum Deleted {
    /// The lock was this run's and is deleted.
    Ours,
    /// There was no lock.
    Absent,
    /// The lock belongs to another run (or cannot be read) and was left alone.
    NotOurs,
}

/// Deletes the lock at `key` if it holds `token`, retrying store errors with backoff.
///
/// S3 has no compare-and-swap delete, so this reads the lock and then deletes it. Between the
/// two requests (one round trip) another run could replace it only if it had gone stale, that
/// is, if this run had failed to refresh it for a whole TTL; that run's lock would then be
/// deleted. Nothing else ever deletes a lock that is not this run's.
async fn delete_if_ours(lake: &Location, key: &str, token: &str) -> Result<Deleted, StoreError> {
    let mut wait = DELETE_BACKOFF;
    let mut attempt = 1;
    loop {
        let outcome = async {
            let Some(bytes) = lake.get(key).await? else {
                return Ok(Deleted::Absent);
            };
            match serde_json::from_slice::<LockInfo>(&bytes) {
                Ok(current) if current.is_ours(token) => {
                    lake.delete(key).await?;
                    Ok(Deleted::Ours)
                }
                _ => Ok(Deleted::NotOurs),
            }
        }
        .await;
        match outcome {
            Err(e) if attempt < DELETE_ATTEMPTS => {
                tracing::debug!(key = %key, attempt, error = %e, "deleting the job lock failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// What a refresh found.
#[derive(Debug, PartialEq, Eq)]
enum Refreshed {
    /// The lock holds the new expiry.
    Yes,
    /// The lock is gone or another run's: nothing was written.
    TakenOver,
}

/// Moves the expiry of this run's lock (`info`, with its token) forward, only while the lock is
/// still this run's: a compare-and-swap on the version read, so a run whose lock went stale and
/// was taken over never overwrites the new holder's lock. Stores without compare-and-swap (the
/// local file store) write after the same check.
async fn refresh(lake: &Location, key: &str, info: &LockInfo) -> Result<Refreshed, StoreError> {
    let Some((bytes, version)) = lake.get_versioned(key).await? else {
        return Ok(Refreshed::TakenOver);
    };
    match serde_json::from_slice::<LockInfo>(&bytes) {
        Ok(current) if current.is_ours(&info.token) => {}
        _ => return Ok(Refreshed::TakenOver),
    }
    let body = Bytes::from(serde_json::to_vec_pretty(info).expect("lock serializes"));
    match lake.replace_if(key, body.clone(), version).await? {
        Conditional::Written => Ok(Refreshed::Yes),
        // Changed between the read and the write: whoever changed it holds it now.
        Conditional::Conflict => Ok(Refreshed::TakenOver),
        Conditional::Unsupported => {
            lake.put(key, body).await?;
            Ok(Refreshed::Yes)
        }
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
                match refresh(&lake, &key, &info).await {
                    Ok(Refreshed::Yes) => {}
                    Ok(Refreshed::TakenOver) => {
                        tracing::warn!(key = %key, "the lock was taken over while this run held it (run longer than its TTL?); no longer refreshing it");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(key = %key, error = %e, "could not refresh the job lock")
                    }
                }
            }
        })
    }

    /// Releases the lock: deletes it if it still holds this run's token (never another run's
    /// lock), retrying store errors a few times with backoff.
    pub async fn release(self) -> Result<(), StoreError> {
        if delete_if_ours(&self.lake, &self.key, &self.info.token).await? == Deleted::NotOurs {
            tracing::warn!(key = %self.key, "the lock was taken over while this run held it (run longer than its TTL?)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::Access;
    use futures::stream::{BoxStream, StreamExt};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// An in-memory store that loses answers: the requests are real, some outcomes are faults.
    #[derive(Debug, Default)]
    struct Faulty {
        inner: InMemory,
        /// Conditional puts (create or compare-and-swap) applied whose answer is lost; the
        /// client retries, and the retry meets the object the first attempt wrote.
        lost_answers: AtomicUsize,
        /// Creates sent to the store (applied, or refused if the object exists) and then answered
        /// with an error (a 500 after the write, the client's retries spent).
        failed_after_create: AtomicUsize,
        /// Deletes reset before the store applied them.
        reset_deletes: AtomicUsize,
    }

    fn spend(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    fn fault(what: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "Faulty",
            source: what.into(),
        }
    }

    impl std::fmt::Display for Faulty {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Faulty({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Faulty {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            let conditional = !matches!(opts.mode, PutMode::Overwrite);
            if conditional && spend(&self.lost_answers) {
                let _lost = self
                    .inner
                    .put_opts(location, payload.clone(), opts.clone())
                    .await;
                return self.inner.put_opts(location, payload, opts).await;
            }
            if matches!(opts.mode, PutMode::Create) && spend(&self.failed_after_create) {
                let _applied_or_refused = self.inner.put_opts(location, payload, opts).await;
                return Err(fault("500 Internal Error (the create may be applied)"));
            }
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            if spend(&self.reset_deletes) {
                return futures::stream::once(async { Err(fault("connection reset")) }).boxed();
            }
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    fn faulty() -> (Arc<Faulty>, Location) {
        let store = Arc::new(Faulty::default());
        let lake = Location::over(store.clone(), "memory://lake");
        (store, lake)
    }

    async fn lock_on(lake: &Location, job: &str) -> Option<LockInfo> {
        let bytes = lake.get(&lock_key(job)).await.unwrap()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_lost_answer_to_the_create_still_gives_the_run_its_lock() {
        let (store, lake) = faulty();
        store.lost_answers.store(1, Ordering::SeqCst);
        let lock = acquire(&lake, "job", MINUTE, "run a").await.unwrap();
        assert!(lock.took_over.is_none());
        assert_eq!(lock_on(&lake, "job").await.unwrap(), lock.info);
        // It is a real lock: another run is refused.
        let other = acquire(&lake, "job", MINUTE, "run b").await.err().unwrap();
        assert!(matches!(other, LockError::Held { .. }), "{other}");
        lock.release().await.unwrap();
        assert!(lock_on(&lake, "job").await.is_none());
    }

    #[tokio::test]
    async fn a_lost_answer_to_a_takeover_still_gives_the_run_its_lock() {
        let (store, lake) = faulty();
        let crashed = acquire(&lake, "job", Duration::ZERO, "crashed run")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.lost_answers.store(1, Ordering::SeqCst);
        let lock = acquire(&lake, "job", MINUTE, "run b").await.unwrap();
        assert_eq!(lock.took_over.as_ref(), Some(&crashed.info));
        assert_eq!(lock_on(&lake, "job").await.unwrap(), lock.info);
        lock.release().await.unwrap();
        assert!(lock_on(&lake, "job").await.is_none());
    }

    #[tokio::test]
    async fn a_lock_step_failing_after_the_create_leaves_no_lock() {
        let (store, lake) = faulty();
        store.failed_after_create.store(1, Ordering::SeqCst);
        let err = acquire(&lake, "job", MINUTE, "run a").await.err().unwrap();
        assert!(matches!(err, LockError::Store(_)), "{err}");
        assert!(lock_on(&lake, "job").await.is_none());
        // The next run is not skipped.
        acquire(&lake, "job", MINUTE, "run b")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_failed_lock_step_never_deletes_another_runs_lock() {
        let (store, lake) = faulty();
        let holder = acquire(&lake, "job", MINUTE, "holder").await.unwrap();
        // The create fails (it did not write: the holder's lock is there) and the run gives up.
        store.failed_after_create.store(1, Ordering::SeqCst);
        let err = acquire(&lake, "job", MINUTE, "run b").await.err().unwrap();
        assert!(matches!(err, LockError::Store(_)), "{err}");
        assert_eq!(lock_on(&lake, "job").await.unwrap(), holder.info);
        holder.release().await.unwrap();
    }

    #[tokio::test]
    async fn a_reset_on_release_is_retried_and_the_lock_is_gone() {
        let (store, lake) = faulty();
        let lock = acquire(&lake, "job", MINUTE, "run a").await.unwrap();
        store.reset_deletes.store(2, Ordering::SeqCst);
        lock.release().await.unwrap();
        assert_eq!(store.reset_deletes.load(Ordering::SeqCst), 0);
        assert!(lock_on(&lake, "job").await.is_none());
    }

    #[tokio::test]
    async fn release_never_deletes_another_runs_lock() {
        let (_store, lake) = faulty();
        let first = acquire(&lake, "job", Duration::ZERO, "run a")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let taker = acquire(&lake, "job", MINUTE, "run b").await.unwrap();
        assert_eq!(taker.took_over.as_ref(), Some(&first.info));
        first.release().await.unwrap();
        assert_eq!(lock_on(&lake, "job").await.unwrap(), taker.info);
        // Same owner and start, another run's token: still not ours.
        let mut twin = taker.info.clone();
        twin.token = new_token();
        assert_ne!(twin.token, taker.info.token);
        let body = Bytes::from(serde_json::to_vec(&twin).unwrap());
        lake.put(&lock_key("job"), body).await.unwrap();
        taker.release().await.unwrap();
        assert_eq!(lock_on(&lake, "job").await.unwrap(), twin);
    }

    #[tokio::test]
    async fn a_refresh_moves_only_this_runs_lock_and_never_a_takers() {
        let (_store, lake) = faulty();
        let first = acquire(&lake, "job", Duration::ZERO, "run a")
            .await
            .unwrap();
        let mut later = first.info.clone();
        later.expires_at = Utc::now() + chrono::Duration::minutes(5);
        assert_eq!(
            refresh(&lake, &first.key, &later).await.unwrap(),
            Refreshed::Yes
        );
        assert_eq!(lock_on(&lake, "job").await.unwrap(), later);
        // Stale (expired at once), taken over: the old holder's refresh must not overwrite it.
        let mut stale = first.info.clone();
        stale.expires_at = Utc::now() - chrono::Duration::minutes(1);
        let body = Bytes::from(serde_json::to_vec(&stale).unwrap());
        lake.put(&lock_key("job"), body).await.unwrap();
        let taker = acquire(&lake, "job", MINUTE, "run b").await.unwrap();
        assert_eq!(
            refresh(&lake, &first.key, &later).await.unwrap(),
            Refreshed::TakenOver
        );
        assert_eq!(lock_on(&lake, "job").await.unwrap(), taker.info);
        taker.release().await.unwrap();
        assert_eq!(
            refresh(&lake, &first.key, &later).await.unwrap(),
            Refreshed::TakenOver,
            "a released lock is not brought back"
        );
        assert!(lock_on(&lake, "job").await.is_none());
    }

    #[test]
    fn locks_without_a_token_read_and_are_nobodys() {
        let old = r#"{"owner":"h pid 1","started_at":"2024-01-01T00:00:00Z","expires_at":"2024-01-01T01:00:00Z","command":"x"}"#;
        let info: LockInfo = serde_json::from_str(old).unwrap();
        assert!(info.token.is_empty() && !info.is_ours(""));
    }

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
