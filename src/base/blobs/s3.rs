//! S3-compatible object storage through `object_store`'s `AmazonS3`.
//!
//! Durability: a PUT that has completed is durable (the store's contract), so the group commit
//! acknowledges a bundle once its PUT and its row have both completed, as the local backend once
//! its fsyncs have. Placing uses a conditional PUT (`If-None-Match: *`) and reports an object
//! that was there; correctness does not rest on it, because not every S3-compatible store makes
//! it atomic (s3s-fs, the tests' server, checks and then writes): spooled keys carry their
//! content's digest ([`super::Key::spooled`]), so racing writers of one key write the same bytes.
//!
//! The crate is async; nachtwacht's stages that touch ciphertexts run on plain threads. Requests
//! therefore run on one small runtime of this module's, and the calling thread waits for their
//! answer on a channel, which works from any thread (a Tokio worker included, where
//! `Runtime::block_on` would panic).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use super::{Error, Key, Listed, Placed, Result};
use crate::base::config::StorageConfig;

/// Requests in flight at once for a batch (the group commit's PUTs, a decode batch's moves).
const PARALLEL_REQUESTS: usize = 32;

#[derive(Clone)]
pub struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    endpoint: String,
    prefix: String,
}

impl std::fmt::Debug for S3Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The runtime every S3 request runs on, made once per process and never dropped (dropping a
/// runtime inside another one's task panics).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("object-storage")
            .enable_all()
            .build()
            .expect("the object storage runtime starts")
    })
}

/// Runs `future` on the object storage runtime and waits for its output on this thread.
fn wait<T: Send + 'static>(future: impl std::future::Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .expect("the object storage runtime outlives its requests")
}

fn object_err(key: &Key) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |source| Error::Object {
        key: key.to_string(),
        source: Box::new(source),
    }
}

impl S3Blobs {
    /// Connects to the bucket `config` names (the secret key read from its file, relative to the
    /// data directory `root`). Nothing is requested until the first use.
    pub fn open(config: &StorageConfig, root: &Path) -> Result<Self> {
        let missing =
            |what: &str| Error::Config(format!("[storage] backend = \"s3\" needs {what}"));
        let endpoint = config.endpoint.clone().ok_or_else(|| missing("endpoint"))?;
        let bucket = config.bucket.clone().ok_or_else(|| missing("bucket"))?;
        let access_key = config
            .access_key_id
            .clone()
            .ok_or_else(|| missing("access_key_id"))?;
        let secret_file = config
            .secret_access_key_file
            .as_deref()
            .ok_or_else(|| missing("secret_access_key_file"))?;
        let secret_path = root.join(secret_file);
        let secret = std::fs::read_to_string(&secret_path)
            .map_err(|e| Error::Config(format!("{}: {e}", secret_path.display())))?;
        if endpoint.starts_with("http://") && !config.allow_http {
            return Err(Error::Config(format!(
                "{endpoint} is plain HTTP: ciphertexts and credentials would cross the network \
                 unprotected; use https, or set allow_http = true for a store on this machine"
            )));
        }
        // A store that does not answer is reported within seconds rather than retried for
        // minutes: the group commit holds its uploads' acknowledgements meanwhile, and the
        // stations retry on their own.
        let mut options = object_store::ClientOptions::new()
            .with_allow_http(config.allow_http)
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_timeout(std::time::Duration::from_secs(60));
        if let Some(ca) = &config.ca_file {
            let ca_path = root.join(ca);
            let pem = std::fs::read(&ca_path)
                .map_err(|e| Error::Config(format!("{}: {e}", ca_path.display())))?;
            for cert in object_store::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::Config(format!("{}: {e}", ca_path.display())))?
            {
                options = options.with_root_certificate(cert);
            }
        }
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_bucket_name(&bucket)
            .with_region(if config.region.is_empty() {
                "us-east-1"
            } else {
                &config.region
            })
            .with_access_key_id(access_key)
            .with_secret_access_key(secret.trim())
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_client_options(options)
            .with_retry(object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(15),
                ..Default::default()
            })
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            bucket,
            endpoint,
            prefix: config.prefix.trim_matches('/').to_string(),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {}",
            self.bucket,
            self.prefix,
            self.endpoint.trim_end_matches('/')
        )
    }

    fn path(&self, key: &Key) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(key.as_str())
        } else {
            ObjectPath::from(format!("{}/{}", self.prefix, key.as_str()))
        }
    }

    fn key_of(&self, path: &ObjectPath) -> Option<Key> {
        let full = path.as_ref();
        let rel = if self.prefix.is_empty() {
            full
        } else {
            full.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        Key::parse(rel)
    }

    pub fn place_all(&self, items: &[(Key, &[u8])]) -> Result<Vec<Placed>> {
        let jobs: Vec<(Key, ObjectPath, bytes::Bytes)> = items
            .iter()
            .map(|(key, bytes)| {
                (
                    key.clone(),
                    self.path(key),
                    bytes::Bytes::copy_from_slice(bytes),
                )
            })
            .collect();
        let store = self.store.clone();
        let outcomes = wait(async move {
            use futures::StreamExt;
            futures::stream::iter(jobs)
                .map(|(key, path, bytes)| {
                    let store = store.clone();
                    async move {
                        let create = PutOptions::from(PutMode::Create);
                        let payload = PutPayload::from(bytes.clone());
                        match store.put_opts(&path, payload, create).await {
                            Ok(_) => Ok(Placed::New),
                            Err(object_store::Error::AlreadyExists { .. }) => {
                                let there = store.get(&path).await.map_err(object_err(&key))?;
                                let there = there.bytes().await.map_err(object_err(&key))?;
                                Ok(if there == bytes {
                                    Placed::Same
                                } else {
                                    Placed::Other
                                })
                            }
                            Err(e) => Err(object_err(&key)(e)),
                        }
                    }
                })
                .buffered(PARALLEL_REQUESTS)
                .collect::<Vec<Result<Placed>>>()
                .await
        });
        outcomes.into_iter().collect()
    }

    pub fn put(&self, key: &Key, bytes: &[u8]) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key));
        let payload = PutPayload::from(bytes.to_vec());
        wait(async move { store.put(&path, payload).await })
            .map(|_| ())
            .map_err(object_err(key))
    }

    pub fn get(&self, key: &Key) -> Result<Option<Vec<u8>>> {
        let (store, path) = (self.store.clone(), self.path(key));
        let got = wait(async move {
            match store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        got.map(|b| b.map(|b| b.to_vec())).map_err(object_err(key))
    }

    /// Several objects' bytes, fetched in parallel; `None` for one that is not there.
    pub fn get_all(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>> {
        let jobs: Vec<(Key, ObjectPath)> = keys.iter().map(|k| (k.clone(), self.path(k))).collect();
        let store = self.store.clone();
        let outcomes = wait(async move {
            use futures::StreamExt;
            futures::stream::iter(jobs)
                .map(|(key, path)| {
                    let store = store.clone();
                    async move {
                        match store.get(&path).await {
                            Ok(r) => r.bytes().await.map(|b| Some(b.to_vec())),
                            Err(object_store::Error::NotFound { .. }) => Ok(None),
                            Err(e) => Err(e),
                        }
                        .map_err(object_err(&key))
                    }
                })
                .buffered(PARALLEL_REQUESTS)
                .collect::<Vec<Result<Option<Vec<u8>>>>>()
                .await
        });
        outcomes.into_iter().collect()
    }

    pub fn exists(&self, key: &Key) -> Result<bool> {
        let (store, path) = (self.store.clone(), self.path(key));
        match wait(async move { store.head(&path).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(object_err(key)(e)),
        }
    }

    pub fn remove(&self, key: &Key) -> Result<()> {
        let (store, path) = (self.store.clone(), self.path(key));
        match wait(async move { store.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_err(key)(e)),
        }
    }

    /// Copy, then delete: a crash between leaves the same bytes under both keys, which readers
    /// accept (see [`super::Blobs::move_all`]).
    pub fn move_all(&self, moves: &[(Key, Key)]) -> Result<()> {
        let jobs: Vec<(Key, ObjectPath, ObjectPath)> = moves
            .iter()
            .map(|(from, to)| (from.clone(), self.path(from), self.path(to)))
            .collect();
        let store = self.store.clone();
        let outcomes = wait(async move {
            use futures::StreamExt;
            futures::stream::iter(jobs)
                .map(|(key, from, to)| {
                    let store = store.clone();
                    async move {
                        match store.copy(&from, &to).await {
                            Ok(()) => {}
                            Err(object_store::Error::NotFound { .. }) => return Ok(()),
                            Err(e) => return Err(object_err(&key)(e)),
                        }
                        match store.delete(&from).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(e) => Err(object_err(&key)(e)),
                        }
                    }
                })
                .buffered(PARALLEL_REQUESTS)
                .collect::<Vec<Result<()>>>()
                .await
        });
        outcomes.into_iter().collect()
    }

    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>> {
        let store = self.store.clone();
        // A listing prefix is whole path segments in object_store; a partial last segment filters.
        let (folder, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        let folder_key = Key(folder.to_string());
        let folder_path = if folder.is_empty() {
            (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()))
        } else {
            Some(self.path(&folder_key))
        };
        let metas = wait(async move {
            use futures::TryStreamExt;
            store
                .list(folder_path.as_ref())
                .try_collect::<Vec<_>>()
                .await
        })
        .map_err(object_err(&folder_key))?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let key = self.key_of(&meta.location)?;
                key.as_str().starts_with(prefix).then(|| Listed {
                    key,
                    size: meta.size,
                    modified: meta.last_modified.into(),
                })
            })
            .collect())
    }
}
