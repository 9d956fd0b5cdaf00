//! A folder in an object store, opened from a URL: `s3://bucket/prefix` or `file://path`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use object_store::{GetResultPayload, ObjectStore, ObjectStoreExt, PutPayload};

use crate::aws::SdkCredentials;

/// Storage errors, each naming the object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not usable.
    #[error("{url}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A request failed.
    #[error("{url}: {source}")]
    Request {
        /// The object or prefix.
        url: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
}

/// A listed object, relative to the location's root.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Key relative to the root.
    pub relative: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub modified: chrono::DateTime<chrono::Utc>,
    /// The store's version tag: the S3 ETag, or inode-mtime-size of a local file.
    pub e_tag: Option<String>,
}

/// A directory entry of a source that cannot be read or named (a symlink loop, a dangling or
/// self-referencing link, a name that is not UTF-8, a folder without read permission).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The entry, relative to the root (non-UTF-8 bytes shown as `\u{FFFD}`).
    pub entry: String,
    /// Why it was skipped.
    pub reason: String,
}

/// A source listing: the objects, and the entries that had to be skipped.
#[derive(Debug, Clone, Default)]
pub struct SourceListing {
    /// Objects, sorted by key.
    pub objects: Vec<Listed>,
    /// Entries that cannot be read or named, each reported once.
    pub unreadable: Vec<Unreadable>,
}

/// A folder of an object store.
#[derive(Debug, Clone)]
pub struct Location {
    counts: Arc<RequestCounts>,
    store: Arc<dyn ObjectStore>,
    root: Path,
    url: String,
    /// The folder of a `file://` location (listed directly, so one bad entry skips only itself).
    local_dir: Option<std::path::PathBuf>,
}

/// Requests made through a location, for run summaries and request budgets.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// Object reads.
    pub get: AtomicU64,
    /// Object writes.
    pub put: AtomicU64,
    /// Listing pages (1,000 keys each on S3).
    pub list_pages: AtomicU64,
}

impl RequestCounts {
    /// `(get, put, list_pages)` so far.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.get.load(Ordering::Relaxed),
            self.put.load(Ordering::Relaxed),
            self.list_pages.load(Ordering::Relaxed),
        )
    }
}

/// S3 returns at most this many keys per listing page.
const LIST_PAGE: u64 = 1000;

/// How a `file://` folder is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The folder must exist (a source).
    MustExist,
    /// The folder is created if missing (a lake being written).
    Create,
    /// A missing folder reads as empty and is not created (a lake during a dry run).
    ReadOnly,
}

/// A readable body: a local file is read in large blocks, anything else is streamed.
pub enum Body {
    /// A local file.
    File(std::fs::File),
    /// A remote object.
    Stream(futures::stream::BoxStream<'static, object_store::Result<Bytes>>),
}

/// Size of the blocks read from a local file.
const FILE_BLOCK: usize = 4 << 20;

impl Location {
    /// Opens `url`; relative `file://` paths resolve from the working directory, `access` says
    /// what a missing folder means. S3 uses the AWS SDK's credential chain and region.
    pub async fn open(
        url: &str,
        region: Option<&str>,
        access: Access,
    ) -> Result<Location, StoreError> {
        let bad = |reason: String| StoreError::Url {
            url: url.to_string(),
            reason,
        };
        if let Some(path) = url.strip_prefix("file://") {
            let dir = std::path::Path::new(if path.is_empty() { "." } else { path });
            if access == Access::Create {
                std::fs::create_dir_all(dir)
                    .map_err(|e| bad(format!("cannot create folder: {e}")))?;
            }
            if access == Access::ReadOnly && !dir.exists() {
                return Ok(Location {
                    counts: Default::default(),
                    store: Arc::new(object_store::memory::InMemory::new()),
                    root: Path::default(),
                    url: with_slash(url),
                    local_dir: None,
                });
            }
            if !dir.is_dir() {
                return Err(bad("folder does not exist".into()));
            }
            let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(e.to_string()))?;
            return Ok(Location {
                counts: Default::default(),
                store: Arc::new(store),
                root: Path::default(),
                url: with_slash(url),
                local_dir: Some(dir.to_path_buf()),
            });
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(bad("expected an s3:// or file:// URL".into()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let config = crate::aws::sdk_config(region).await;
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            bad("no AWS region: set AWS_REGION, a profile region or the job's region".into())
        })?;
        let policy = crate::net::RetryPolicy::current();
        let mut builder = AmazonS3Builder::new()
            .with_retry(policy.object_store_retry())
            .with_client_options(policy.object_store_client())
            .with_bucket_name(bucket)
            .with_region(region)
            .with_credentials(Arc::new(SdkCredentials::new(config.clone())));
        if let Some(endpoint) = config.endpoint_url() {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let store = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(Location {
            counts: Default::default(),
            store: Arc::new(store),
            root: key_path(&Path::default(), prefix),
            url: with_slash(url),
            local_dir: None,
        })
    }

    /// A location over any store (a test double wrapping an in-memory store, say).
    #[cfg(test)]
    pub(crate) fn over(store: Arc<dyn ObjectStore>, url: &str) -> Location {
        Location {
            counts: Default::default(),
            store,
            root: Path::default(),
            url: with_slash(url),
            local_dir: None,
        }
    }

    /// Requests made so far through this location.
    pub fn requests(&self) -> &RequestCounts {
        &self.counts
    }

    /// The URL of the root, ending in `/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of an object below the root.
    pub fn url_of(&self, relative: &str) -> String {
        format!("{}{relative}", self.url)
    }

    fn path(&self, relative: &str) -> Path {
        key_path(&self.root, relative)
    }

    fn err(&self, relative: &str) -> impl Fn(object_store::Error) -> StoreError + '_ {
        let url = self.url_of(relative);
        move |source| StoreError::Request {
            url: url.clone(),
            source,
        }
    }

    /// Every object under `relative_prefix` (recursively), sorted by key.
    pub async fn list(&self, relative_prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let prefix = self.path(relative_prefix);
        let root_len = if self.root.as_ref().is_empty() {
            0
        } else {
            self.root.as_ref().len() + 1
        };
        let listing = retry_reads(|| self.store.list(Some(&prefix)).try_collect::<Vec<_>>()).await;
        let metas: Vec<_> = match listing {
            Ok(metas) => metas,
            // A local folder that does not exist yet simply has no objects.
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.err(relative_prefix)(e)),
        };
        let mut listed: Vec<Listed> = metas
            .into_iter()
            .map(|m| Listed {
                relative: m.location.as_ref()[root_len..].to_string(),
                size: m.size,
                modified: m.last_modified,
                e_tag: m.e_tag,
            })
            .collect();
        let pages = (listed.len() as u64).div_ceil(LIST_PAGE).max(1);
        self.counts.list_pages.fetch_add(pages, Ordering::Relaxed);
        listed.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(listed)
    }

    /// Every object of a source, sorted by key, skipping (and naming) the entries that cannot
    /// be read or named instead of failing: one bad directory entry must not stop the others.
    ///
    /// `skip` holds key ranges `[from, to]` (relative, disjoint) the caller does not need: an
    /// S3 listing jumps over each with `start-after`, so a run reads the listing pages of what
    /// is new rather than of years of history. Other stores may still return keys in them.
    pub async fn list_source(
        &self,
        skip: &[(String, String)],
    ) -> Result<SourceListing, StoreError> {
        let Some(dir) = self.local_dir.clone() else {
            return Ok(SourceListing {
                objects: retry_reads(|| self.list_skipping(skip))
                    .await
                    .map_err(self.err(""))?,
                unreadable: Vec::new(),
            });
        };
        let listing = tokio::task::spawn_blocking(move || walk_local(&dir))
            .await
            .expect("listing task does not panic");
        let pages = (listing.objects.len() as u64).div_ceil(LIST_PAGE).max(1);
        self.counts.list_pages.fetch_add(pages, Ordering::Relaxed);
        Ok(listing)
    }

    /// Lists the root in segments: up to each skipped range, then on after its end.
    async fn list_skipping(
        &self,
        skip: &[(String, String)],
    ) -> Result<Vec<Listed>, object_store::Error> {
        let root_len = if self.root.as_ref().is_empty() {
            0
        } else {
            self.root.as_ref().len() + 1
        };
        let mut ranges: Vec<&(String, String)> = skip.iter().filter(|(a, b)| a < b).collect();
        ranges.sort();
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        for range in ranges.iter().map(Some).chain([None]) {
            let stop = range.map(|(from, _)| from.as_str());
            let covered =
                matches!((&after, stop), (Some(cursor), Some(stop)) if cursor.as_str() >= stop);
            if covered {
                after = range.map(|(_, to)| to.clone()).max(after);
                continue;
            }
            let mut stream = match &after {
                None => self.store.list(Some(&self.root)),
                Some(offset) => self
                    .store
                    .list_with_offset(Some(&self.root), &self.path(offset)),
            };
            let mut count = 0u64;
            loop {
                let meta = match stream.try_next().await {
                    Ok(Some(meta)) => meta,
                    Ok(None) => break,
                    Err(object_store::Error::NotFound { .. }) => break,
                    Err(e) => return Err(e),
                };
                let relative = meta.location.as_ref()[root_len..].to_string();
                if stop.is_some_and(|stop| relative.as_str() >= stop) {
                    break;
                }
                count += 1;
                listed.push(Listed {
                    relative,
                    size: meta.size,
                    modified: meta.last_modified,
                    e_tag: meta.e_tag,
                });
            }
            self.counts
                .list_pages
                .fetch_add(count.div_ceil(LIST_PAGE).max(1), Ordering::Relaxed);
            after = range.map(|(_, to)| to.clone()).max(after);
        }
        listed.sort_by(|a, b| a.relative.cmp(&b.relative));
        listed.dedup_by(|a, b| a.relative == b.relative);
        Ok(listed)
    }

    /// The names of the folders directly under `relative_prefix` (one delimited listing, not
    /// the objects below them), sorted.
    pub async fn list_folders(&self, relative_prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = self.path(relative_prefix);
        let listing = match self.store.list_with_delimiter(Some(&prefix)).await {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(relative_prefix)(e)),
        };
        self.counts.list_pages.fetch_add(1, Ordering::Relaxed);
        let mut folders: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        folders.sort();
        Ok(folders)
    }

    /// The whole object, or `None` if it does not exist.
    pub async fn get(&self, relative: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(relative);
        let read = retry_reads(|| async {
            self.counts.get.fetch_add(1, Ordering::Relaxed);
            self.store.get(&path).await?.bytes().await
        });
        match read.await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(relative)(e)),
        }
    }

    /// The object as a body to read in pieces.
    pub async fn open_body(&self, relative: &str) -> Result<Body, StoreError> {
        self.counts.get.fetch_add(1, Ordering::Relaxed);
        let result = self
            .store
            .get(&self.path(relative))
            .await
            .map_err(self.err(relative))?;
        Ok(match result.payload {
            GetResultPayload::File(file, _) => Body::File(file),
            GetResultPayload::Stream(stream) => Body::Stream(stream),
        })
    }

    /// Replaces (or creates) an object with one PUT: readers see the old or the new object, never a part.
    pub async fn put(&self, relative: &str, bytes: Bytes) -> Result<(), StoreError> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.store
            .put(&self.path(relative), PutPayload::from(bytes))
            .await
            .map_err(self.err(relative))?;
        self.remove_staging_leftovers(relative).await;
        Ok(())
    }

    /// After a write of `relative` to a local folder: removes the staging files of writes of the
    /// same key that never finished (a killed run's). The local store writes `<name>#<n>` and
    /// renames it into place; its own listing hides such files, but Spark, Hive or `ls` reading
    /// the folder see them, and nothing else would ever delete them. Each key has one writer at
    /// a time (the job lock; shards write disjoint keys), so none of them is still being written.
    /// A file that cannot be removed is left (logged): the write itself succeeded.
    async fn remove_staging_leftovers(&self, relative: &str) {
        let Some(dir) = &self.local_dir else {
            return;
        };
        let target = dir.join(relative);
        let (Some(folder), Some(name)) = (target.parent(), target.file_name()) else {
            return;
        };
        let prefix = format!("{}#", name.to_string_lossy());
        let Ok(mut entries) = tokio::fs::read_dir(folder).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let entry_name = entry.file_name();
            let entry_name = entry_name.to_string_lossy();
            let is_staging = entry_name
                .strip_prefix(&prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_staging {
                if let Err(e) = tokio::fs::remove_file(entry.path()).await {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not remove an unfinished write's staging file");
                }
            }
        }
    }
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditional {
    /// Written.
    Written,
    /// Not written: the object exists (create) or changed since it was read (update).
    Conflict,
    /// The store cannot do this conditional write (the local file store has no compare-and-swap).
    Unsupported,
}

impl Location {
    /// Creates an object only if none exists (`If-None-Match: *` on S3).
    pub async fn create(&self, relative: &str, bytes: Bytes) -> Result<Conditional, StoreError> {
        self.put_mode(relative, bytes, object_store::PutMode::Create)
            .await
    }

    /// Replaces an object only if it is still the version read as `version` (`If-Match` on S3).
    pub async fn replace_if(
        &self,
        relative: &str,
        bytes: Bytes,
        version: object_store::UpdateVersion,
    ) -> Result<Conditional, StoreError> {
        self.put_mode(relative, bytes, object_store::PutMode::Update(version))
            .await
    }

    async fn put_mode(
        &self,
        relative: &str,
        bytes: Bytes,
        mode: object_store::PutMode,
    ) -> Result<Conditional, StoreError> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        let options = object_store::PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(relative), PutPayload::from(bytes), options)
            .await
        {
            Ok(_) => {
                self.remove_staging_leftovers(relative).await;
                Ok(Conditional::Written)
            }
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Ok(Conditional::Conflict),
            Err(object_store::Error::NotImplemented { .. })
            | Err(object_store::Error::NotSupported { .. }) => Ok(Conditional::Unsupported),
            Err(e) => Err(self.err(relative)(e)),
        }
    }

    /// An object with its version (for [`Location::replace_if`]), or `None`.
    pub async fn get_versioned(
        &self,
        relative: &str,
    ) -> Result<Option<(Bytes, object_store::UpdateVersion)>, StoreError> {
        let path = self.path(relative);
        let read = retry_reads(|| async {
            self.counts.get.fetch_add(1, Ordering::Relaxed);
            let result = self.store.get(&path).await?;
            let version = object_store::UpdateVersion {
                e_tag: result.meta.e_tag.clone(),
                version: result.meta.version.clone(),
            };
            Ok((result.bytes().await?, version))
        });
        match read.await {
            Ok(found) => Ok(Some(found)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(relative)(e)),
        }
    }
}

/// Files up to this size are uploaded with one PUT; larger ones as a multipart upload, which
/// S3 makes visible only when complete (and the local store renames into place).
const SINGLE_PUT_LIMIT: u64 = 32 << 20;
/// Part size of multipart uploads.
const PART_SIZE: usize = 16 << 20;

impl Location {
    /// Uploads a local file to `relative`; readers see the old object or the whole new one.
    pub async fn put_file(&self, relative: &str, file: &std::path::Path) -> Result<(), StoreError> {
        let io_err = |e: std::io::Error| StoreError::Request {
            url: self.url_of(relative),
            source: object_store::Error::Generic {
                store: "local file",
                source: e.into(),
            },
        };
        let size = tokio::fs::metadata(file).await.map_err(io_err)?.len();
        if size <= SINGLE_PUT_LIMIT {
            let bytes = tokio::fs::read(file).await.map_err(io_err)?;
            return self.put(relative, Bytes::from(bytes)).await;
        }
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        let upload = self
            .store
            .put_multipart(&self.path(relative))
            .await
            .map_err(self.err(relative))?;
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut reader = tokio::fs::File::open(file).await.map_err(io_err)?;
        let mut block = vec![0u8; PART_SIZE];
        loop {
            use tokio::io::AsyncReadExt;
            let n = reader.read(&mut block).await.map_err(io_err)?;
            if n == 0 {
                break;
            }
            writer
                .wait_for_capacity(2)
                .await
                .map_err(self.err(relative))?;
            writer.write(&block[..n]);
        }
        writer.finish().await.map_err(self.err(relative))?;
        self.remove_staging_leftovers(relative).await;
        Ok(())
    }

    /// Downloads an object to a local file; `false` when it does not exist.
    pub async fn get_to_file(
        &self,
        relative: &str,
        file: &std::path::Path,
    ) -> Result<bool, StoreError> {
        use tokio::io::AsyncWriteExt;
        let io_err = |e: std::io::Error| StoreError::Request {
            url: self.url_of(relative),
            source: object_store::Error::Generic {
                store: "local file",
                source: e.into(),
            },
        };
        self.counts.get.fetch_add(1, Ordering::Relaxed);
        let result = match self.store.get(&self.path(relative)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(self.err(relative)(e)),
        };
        let mut out = tokio::fs::File::create(file).await.map_err(io_err)?;
        let mut stream = result.into_stream();
        while let Some(piece) = stream.try_next().await.map_err(self.err(relative))? {
            out.write_all(&piece).await.map_err(io_err)?;
        }
        out.flush().await.map_err(io_err)?;
        Ok(true)
    }

    /// Copies an object inside the location (server-side on S3).
    pub async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.counts.put.fetch_add(1, Ordering::Relaxed);
        self.store
            .copy(&self.path(from), &self.path(to))
            .await
            .map_err(self.err(to))?;
        self.remove_staging_leftovers(to).await;
        Ok(())
    }

    /// Deletes an object (no error when it is already gone).
    pub async fn delete(&self, relative: &str) -> Result<(), StoreError> {
        match self.store.delete(&self.path(relative)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(relative)(e)),
        }
    }
}

impl Body {
    /// The next piece of the body, `None` at the end.
    pub async fn next(&mut self) -> object_store::Result<Option<Bytes>> {
        match self {
            Body::Stream(stream) => stream.try_next().await,
            Body::File(file) => {
                let mut file = file.try_clone().map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: e.into(),
                })?;
                tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let mut block = Vec::with_capacity(FILE_BLOCK);
                    (&mut file)
                        .take(FILE_BLOCK as u64)
                        .read_to_end(&mut block)?;
                    Ok::<_, std::io::Error>((!block.is_empty()).then(|| Bytes::from(block)))
                })
                .await
                .expect("file read task does not panic")
                .map_err(|e| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: e.into(),
                })
            }
        }
    }
}

/// Runs a read again when it failed on the transport in a way object_store leaves to its
/// caller: a listing page or a body cut short after a successful status (object_store retries
/// statuses, connection errors and, with an ETag, GET bodies itself). Reads are safe to repeat;
/// retries follow the process's [`crate::net::RetryPolicy`] and stop at its call timeout.
async fn retry_reads<T, F, Fut>(read: F) -> object_store::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = object_store::Result<T>>,
{
    let policy = crate::net::RetryPolicy::current();
    let started = std::time::Instant::now();
    let mut attempt = 0u32;
    loop {
        match read().await {
            Err(e)
                if attempt < policy.max_retries
                    && started.elapsed() < policy.call_timeout
                    && is_transport(&e) =>
            {
                attempt += 1;
                let delay = policy.backoff_for(attempt);
                tracing::warn!(error = %e, attempt, delay_ms = delay.as_millis() as u64, "retrying a read");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}

/// Whether an object_store error comes from the HTTP transport (anywhere in its chain).
fn is_transport(error: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Lists a local folder recursively (following links, as the local store does), keeping every
/// readable file whose path can be an object key and naming every entry that is not.
fn walk_local(dir: &std::path::Path) -> SourceListing {
    let mut listing = SourceListing::default();
    let relative_of = |path: &std::path::Path| {
        path.strip_prefix(dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    };
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(true) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let reason = if e.loop_ancestor().is_some() {
                    "symbolic link loop (it points to a folder that contains it)".to_string()
                } else {
                    let link = e
                        .path()
                        .and_then(|p| std::fs::symlink_metadata(p).ok())
                        .is_some_and(|m| m.file_type().is_symlink());
                    match (e.io_error(), link) {
                        (Some(io), true) if io.kind() == std::io::ErrorKind::NotFound => {
                            "dangling symbolic link (its target does not exist)".into()
                        }
                        (Some(io), true) => format!("symbolic link cannot be followed: {io}"),
                        (Some(io), false) => format!("cannot be read: {io}"),
                        (None, _) => e.to_string(),
                    }
                };
                listing.unreadable.push(Unreadable {
                    entry: e.path().map(relative_of).unwrap_or_default(),
                    reason,
                });
                continue;
            }
        };
        if entry.file_type().is_dir() {
            continue;
        }
        if !entry.file_type().is_file() {
            listing.unreadable.push(Unreadable {
                entry: relative_of(entry.path()),
                reason: "not a regular file (a FIFO, socket or device)".into(),
            });
            continue;
        }
        let relative = match entry.path().strip_prefix(dir).map(|p| p.to_str()) {
            Ok(Some(name)) => name.to_string(),
            _ => {
                listing.unreadable.push(Unreadable {
                    entry: relative_of(entry.path()),
                    reason: "the name is not valid UTF-8, so it cannot be an object key".into(),
                });
                continue;
            }
        };
        if let Some(bad) = relative.split('/').find(|p| PathPart::parse(p).is_err()) {
            listing.unreadable.push(Unreadable {
                entry: relative.clone(),
                reason: format!("{bad:?} cannot be part of an object key (control character)"),
            });
            continue;
        }
        // The local store keeps unfinished uploads as `<name>#<digits>` and will not read them.
        if relative
            .rsplit_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            listing.unreadable.push(Unreadable {
                entry: relative,
                reason: "names ending in '#' and digits are the local store's partial uploads"
                    .into(),
            });
            continue;
        }
        match entry.metadata() {
            Ok(meta) => listing.objects.push(Listed {
                e_tag: Some(local_tag(&meta)),
                size: meta.len(),
                modified: meta
                    .modified()
                    .map(chrono::DateTime::<chrono::Utc>::from)
                    .unwrap_or_default(),
                relative,
            }),
            Err(e) => listing.unreadable.push(Unreadable {
                entry: relative,
                reason: format!("cannot be read: {e}"),
            }),
        }
    }
    listing.objects.sort_by(|a, b| a.relative.cmp(&b.relative));
    listing
}

/// The local store's ETag scheme (inode, modification time, size): a rewrite in place changes it.
fn local_tag(meta: &std::fs::Metadata) -> String {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let inode = 0u64;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default()
        .as_micros();
    format!("\"{inode:x}-{mtime:x}-{:x}\"", meta.len())
}

/// `relative` below `root` as the store's key, taken literally: a listed key holding `%`, `#`,
/// spaces or non-ASCII names the same object when read back (`Path::from` would percent-encode
/// it a second time). Only segments a path cannot hold (`.`, `..`, control characters) are encoded.
fn key_path(root: &Path, relative: &str) -> Path {
    root.parts()
        .chain(
            relative
                .split('/')
                .filter(|p| !p.is_empty())
                .map(|p| PathPart::parse(p).unwrap_or_else(|_| PathPart::from(p))),
        )
        .collect()
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_taken_literally() {
        let root = key_path(&Path::default(), "/connect/My Reports%20/");
        assert_eq!(root.as_ref(), "connect/My Reports%20");
        for relative in [
            "a b.csv",
            "100%.csv",
            "Q#1.csv",
            "Zoë Ü.csv",
            "x%3A00Z.csv",
            "sub//y.csv",
        ] {
            let path = key_path(&root, relative);
            let expected = format!("connect/My Reports%20/{}", relative.replace("//", "/"));
            assert_eq!(path.as_ref(), expected, "{relative}");
        }
        // Segments a path cannot hold are still encoded, never passed through.
        assert_eq!(key_path(&Path::default(), "a/../b").as_ref(), "a/%2E%2E/b");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_bad_entry_is_named_and_the_others_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good 100%.csv"), "x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("..", dir.path().join("sub/loop")).unwrap();
        std::os::unix::fs::symlink("self.csv", dir.path().join("self.csv")).unwrap();
        let url = format!("file://{}", dir.path().display());
        let source = Location::open(&url, None, Access::MustExist).await.unwrap();
        let listing = source.list_source(&[]).await.unwrap();
        let names: Vec<_> = listing
            .objects
            .iter()
            .map(|o| o.relative.as_str())
            .collect();
        assert_eq!(names, ["good 100%.csv"]);
        let mut bad: Vec<_> = listing
            .unreadable
            .iter()
            .map(|u| u.entry.as_str())
            .collect();
        bad.sort();
        assert_eq!(bad, ["self.csv", "sub/loop"]);
        assert_eq!(source.get("good 100%.csv").await.unwrap().unwrap(), "x");
    }

    #[tokio::test]
    async fn a_write_removes_what_killed_writes_of_its_key_left() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("t/dt=2024-03-10");
        std::fs::create_dir_all(&folder).unwrap();
        for name in ["f.parquet#1", "f.parquet#12", "f.parquet#x", "g.parquet#1"] {
            std::fs::write(folder.join(name), "half").unwrap();
        }
        let url = format!("file://{}", dir.path().display());
        let lake = Location::open(&url, None, Access::Create).await.unwrap();
        lake.put("t/dt=2024-03-10/f.parquet", Bytes::from_static(b"whole"))
            .await
            .unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        // Another key's staging file and names that are not staging files stay.
        assert_eq!(left, ["f.parquet", "f.parquet#x", "g.parquet#1"]);
    }
}
