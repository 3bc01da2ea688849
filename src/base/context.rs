//! [`Context`]: what every stage needs (where the data is, the configuration, the database),
//! opened once per process and cloned into each task.

use std::path::Path;

use crate::base::blobs::Blobs;
use crate::base::config::{self, Config};
use crate::base::datadir::{self, DataDir};
use crate::base::db::{self, Db};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} is not a nachtwacht data directory (run `nachtwacht init --data-dir {0}` first)")]
    NotInitialised(String),
    #[error(transparent)]
    Config(#[from] config::Error),
    #[error(transparent)]
    Db(#[from] db::Error),
    #[error(transparent)]
    Storage(#[from] crate::base::blobs::Error),
    #[error("refusing to serve from {root}: {problem}")]
    NotPrivate {
        root: String,
        problem: datadir::NotPrivate,
    },
    #[error("checking the permissions of {root}: {source}")]
    PermissionCheck {
        root: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What every stage needs: where the data is, the configuration, the database.
#[derive(Clone)]
pub struct Context {
    pub dir: DataDir,
    pub config: Config,
    pub db: Db,
    /// Where bundle ciphertexts are kept: the data directory, or object storage.
    pub blobs: Blobs,
}

impl Context {
    pub fn open(root: &Path) -> Result<Self> {
        let dir = DataDir::new(root);
        if !dir.config().exists() {
            return Err(Error::NotInitialised(root.display().to_string()));
        }
        datadir::restrict_umask();
        let config = Config::load(&dir.config())?;
        let db = Db::open_target(&crate::base::db::Target::of(&config.database, &dir))?;
        let blobs = Blobs::open(&config.storage, &dir)?;
        Ok(Self {
            dir,
            config,
            db,
            blobs,
        })
    }

    /// Refuses a data directory that other accounts can read (see [`DataDir::check_private`]).
    pub fn check_private(&self) -> Result<()> {
        let root = self.dir.root().display().to_string();
        match self.dir.check_private() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(problem)) => Err(Error::NotPrivate { root, problem }),
            Err(source) => Err(Error::PermissionCheck { root, source }),
        }
    }
}
