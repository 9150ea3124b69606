//! The object store behind tiered topics: [`sluice_log::tier::RemoteStore`] over the
//! `object_store` crate — any S3-compatible store (AWS S3, MinIO, moto, …) or a local
//! directory — configured by `[tier]` in the server's config file.
//!
//! The log calls it from blocking threads; each call runs on a small runtime of its own and
//! the caller waits for the answer, so an object store that hangs never stalls the
//! server's async runtime. Every call has a deadline (30 s; 10 min for whole-segment
//! uploads).

use std::collections::HashMap;
use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sluice_config::{TierKind, TierStore};
use sluice_log::tier::{RemoteStore, TierBackend};

const CALL_TIMEOUT: Duration = Duration::from_secs(30);
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Files above this are uploaded in parts.
const MULTIPART_ABOVE: u64 = 16 << 20;
const PART: usize = 8 << 20;
/// Files are read in steps of this size, paced to `max_upload_bytes_per_sec`.
const STEP: usize = 256 << 10;

/// Reads a file in steps, sleeping between them so that on average at most `rate` bytes
/// per second are read (0: no pause). Leaves the disk and memory bus to the appends
/// between steps.
struct Paced {
    file: std::fs::File,
    rate: u64,
    start: std::time::Instant,
    read: u64,
}

impl Paced {
    fn open(path: &Path, rate: u64) -> io::Result<Paced> {
        Ok(Paced {
            file: std::fs::File::open(path)?,
            rate,
            start: std::time::Instant::now(),
            read: 0,
        })
    }

    /// Appends up to `want` bytes to `out`; 0 at the end of the file.
    fn read_into(&mut self, out: &mut Vec<u8>, want: usize) -> io::Result<usize> {
        use std::io::Read;
        let mut total = 0;
        while total < want {
            let n = want.saturating_sub(total).min(STEP);
            let at = out.len();
            out.resize(at + n, 0);
            let got = self.file.read(&mut out[at..])?;
            out.truncate(at + got);
            if got == 0 {
                break;
            }
            total += got;
            self.read += got as u64;
            if self.rate > 0 {
                let due = Duration::from_secs_f64(self.read as f64 / self.rate as f64);
                if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok(total)
    }
}

/// An object store reached with `object_store`, one client per bucket.
pub struct Store {
    config: TierStore,
    /// Taken on drop (shut down in the background: a drop may happen on an async thread).
    rt: Option<tokio::runtime::Runtime>,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish()
    }
}

/// The backend the log uses: this store and a read cache of `cache_bytes`.
pub fn backend(config: &TierStore) -> io::Result<TierBackend> {
    let store = Store::new(config.clone())?;
    Ok(TierBackend::new(Arc::new(store), config.cache_bytes))
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl Store {
    pub fn new(config: TierStore) -> io::Result<Store> {
        if config.kind == TierKind::Local && config.root.is_none() {
            return Err(err("[tier] kind = \"local\" needs `root`"));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-tier-io")
            .on_thread_start(sluice_common::sched::background_priority)
            .enable_all()
            .build()?;
        Ok(Store {
            config,
            rt: Some(rt),
            buckets: Mutex::default(),
        })
    }

    fn bucket(&self, bucket: &str) -> io::Result<Arc<dyn ObjectStore>> {
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(bucket) {
            return Ok(s.clone());
        }
        let store: Arc<dyn ObjectStore> = match self.config.kind {
            TierKind::Memory => Arc::new(object_store::memory::InMemory::new()),
            TierKind::Local => {
                let root = self
                    .config
                    .root
                    .as_ref()
                    .ok_or_else(|| err("no root"))?
                    .join(bucket);
                std::fs::create_dir_all(&root)?;
                Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(err)?)
            }
            TierKind::S3 => {
                let mut b = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_region(&self.config.region)
                    .with_allow_http(self.config.allow_http);
                if let Some(e) = &self.config.endpoint {
                    // Path-style requests: what MinIO, moto and most S3-compatible stores
                    // answer without DNS per bucket.
                    b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
                }
                if let Some(k) = &self.config.access_key_id {
                    b = b.with_access_key_id(k);
                }
                if let Some(k) = &self.config.secret_access_key {
                    b = b.with_secret_access_key(k);
                }
                Arc::new(b.build().map_err(err)?)
            }
        };
        map.insert(bucket.to_string(), store.clone());
        Ok(store)
    }

    /// Runs `fut` on the store's runtime and waits for it (from any thread) with a
    /// deadline.
    fn run<T: Send + 'static>(
        &self,
        timeout: Duration,
        fut: impl Future<Output = io::Result<T>> + Send + 'static,
    ) -> io::Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let rt = self
            .rt
            .as_ref()
            .ok_or_else(|| err("the object store is closed"))?;
        rt.spawn(async move {
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the object store did not answer within {} s",
                        timeout.as_secs()
                    ),
                )),
            };
            let _ = tx.send(r);
        });
        rx.recv()
            .map_err(|_| err("the object store's runtime stopped"))?
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl RemoteStore for Store {
    fn put(&self, bucket: &str, key: &str, data: Bytes) -> io::Result<()> {
        let store = self.bucket(bucket)?;
        let path = ObjectPath::from(key);
        self.run(CALL_TIMEOUT, async move {
            store
                .put(&path, PutPayload::from(data))
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn put_file(&self, bucket: &str, key: &str, file: &Path) -> io::Result<u64> {
        let store = self.bucket(bucket)?;
        let path = ObjectPath::from(key);
        let size = std::fs::metadata(file)?.len();
        let mut reader = Paced::open(file, self.config.max_upload_bytes_per_sec)?;
        if size <= MULTIPART_ABOVE {
            let mut data = Vec::with_capacity(size as usize);
            reader.read_into(&mut data, size as usize)?;
            let n = data.len() as u64;
            self.run(UPLOAD_TIMEOUT, async move {
                store
                    .put(&path, PutPayload::from(Bytes::from(data)))
                    .await
                    .map_err(err)?;
                Ok(n)
            })
        } else {
            // Parts are read (paced) on this thread and sent on the store's runtime, one
            // at a time.
            let upload = self.run(CALL_TIMEOUT, {
                let (store, path) = (store.clone(), path.clone());
                async move { store.put_multipart(&path).await.map_err(err) }
            })?;
            let writer = Arc::new(tokio::sync::Mutex::new(Some(
                WriteMultipart::new_with_chunk_size(upload, PART),
            )));
            let mut sent = 0u64;
            loop {
                let mut part = Vec::with_capacity(PART);
                if reader.read_into(&mut part, PART)? == 0 {
                    break;
                }
                sent += part.len() as u64;
                let w = writer.clone();
                self.run(UPLOAD_TIMEOUT, async move {
                    let mut g = w.lock().await;
                    let w = g.as_mut().ok_or_else(|| err("upload already finished"))?;
                    w.wait_for_capacity(2).await.map_err(err)?;
                    w.write(&part);
                    Ok(())
                })?;
            }
            self.run(UPLOAD_TIMEOUT, async move {
                let w = writer
                    .lock()
                    .await
                    .take()
                    .ok_or_else(|| err("upload already finished"))?;
                w.finish().await.map_err(err)?;
                Ok(sent)
            })
        }
    }

    fn get(&self, bucket: &str, key: &str) -> io::Result<Option<Bytes>> {
        let store = self.bucket(bucket)?;
        let path = ObjectPath::from(key);
        self.run(CALL_TIMEOUT, async move {
            match store.get(&path).await {
                Ok(r) => Ok(Some(r.bytes().await.map_err(err)?)),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn get_range(&self, bucket: &str, key: &str, range: Range<u64>) -> io::Result<Bytes> {
        let store = self.bucket(bucket)?;
        let path = ObjectPath::from(key);
        self.run(CALL_TIMEOUT, async move {
            store.get_range(&path, range).await.map_err(err)
        })
    }

    fn delete(&self, bucket: &str, key: &str) -> io::Result<()> {
        let store = self.bucket(bucket)?;
        let path = ObjectPath::from(key);
        self.run(CALL_TIMEOUT, async move {
            match store.delete(&path).await {
                Ok(()) => Ok(()),
                Err(e) if not_found(&e) => Ok(()),
                Err(e) => Err(err(e)),
            }
        })
    }

    fn list(&self, bucket: &str, prefix: &str) -> io::Result<Vec<(String, u64)>> {
        let store = self.bucket(bucket)?;
        let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        self.run(CALL_TIMEOUT, async move {
            let mut out = Vec::new();
            let mut s = store.list(prefix.as_ref());
            while let Some(m) = s.next().await {
                let m = m.map_err(err)?;
                out.push((m.location.to_string(), m.size));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(root: &Path) -> Store {
        Store::new(TierStore {
            kind: TierKind::Local,
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            root: Some(root.to_path_buf()),
            cache_bytes: 1 << 20,
            upload_interval_ms: 1000,
            max_upload_bytes_per_sec: 0,
            restore_bucket: None,
            restore_prefix: "sluice".into(),
        })
        .unwrap()
    }

    #[test]
    fn a_local_store_puts_gets_ranges_lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let s = local(dir.path());
        s.put("b", "p/t/0/a.json", Bytes::from_static(b"hello world"))
            .unwrap();
        let f = dir.path().join("big");
        std::fs::write(&f, vec![7u8; (MULTIPART_ABOVE + 5) as usize]).unwrap();
        assert_eq!(
            s.put_file("b", "p/t/0/a.log", &f).unwrap(),
            MULTIPART_ABOVE + 5
        );
        assert_eq!(
            s.get("b", "p/t/0/a.json").unwrap().unwrap(),
            Bytes::from_static(b"hello world")
        );
        assert_eq!(s.get("b", "p/t/0/none").unwrap(), None);
        assert_eq!(
            &s.get_range("b", "p/t/0/a.json", 6..11).unwrap()[..],
            b"world"
        );
        let mut keys = s.list("b", "p/t").unwrap();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("p/t/0/a.json".to_string(), 11),
                ("p/t/0/a.log".to_string(), MULTIPART_ABOVE + 5)
            ]
        );
        s.delete("b", "p/t/0/a.json").unwrap();
        s.delete("b", "p/t/0/a.json").unwrap();
        assert_eq!(s.list("b", "p").unwrap().len(), 1);
    }
}
