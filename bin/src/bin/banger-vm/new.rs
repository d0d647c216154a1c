//! `banger-vm new`: the record's `spec` section.

use crate::{NewArgs, BIN};
use banger::cli;
use banger::config::Config;
use banger::record::{self, Writer};
use banger::section::{self, Spec};
use banger::store::{Store, StoreError};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error("invalid VM name {0:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter")]
    Name(String),
    #[error(
        "invalid image name {0:?}: use 1-32 characters a-z, 0-9 and '-', starting with a letter"
    )]
    Image(String),
    #[error("no image named {image} in {dir}: 'banger image list' shows the images; {hint}")]
    NoImage {
        image: String,
        dir: PathBuf,
        hint: String,
    },
    #[error("cannot read the SSH public key {path}")]
    Key {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not look like an SSH public key (expected e.g. 'ssh-ed25519 AAAA...'); pass the .pub file")]
    NotAKey { path: PathBuf },
    #[error(
        "cannot make banger's SSH key {path} (install openssh-client, or pass --ssh-key FILE)"
    )]
    Keygen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn read_pubkey(path: &Path) -> Result<String, NewError> {
    let text = std::fs::read_to_string(path).map_err(|source| NewError::Key {
        path: path.to_path_buf(),
        source,
    })?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match line {
        Some(l) if l.starts_with("ssh-") || l.starts_with("ecdsa-") || l.starts_with("sk-") => {
            Ok(l.to_string())
        }
        _ => Err(NewError::NotAKey {
            path: path.to_path_buf(),
        }),
    }
}

/// banger's own key pair under the state dir, made with ssh-keygen on first use. Made under
/// the store lock into a temp name and renamed, so parallel `new`s agree on one key.
fn default_key(cfg: &Config, store: &Store) -> Result<PathBuf, NewError> {
    let dir = cfg.state_dir.join("ssh");
    let key = dir.join("id_ed25519");
    let public = dir.join("id_ed25519.pub");
    if public.exists() {
        return Ok(public);
    }
    let _g = store.lock_store()?;
    if public.exists() {
        return Ok(public);
    }
    let keygen = |source| NewError::Keygen {
        path: key.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(keygen)?;
    let tmp = dir.join(format!(".id_ed25519.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f"])
        .arg(&tmp)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(keygen)?;
    if !out.status.success() {
        return Err(keygen(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )));
    }
    let mut tmp_pub = tmp.clone().into_os_string();
    tmp_pub.push(".pub");
    std::fs::rename(&tmp, &key).map_err(keygen)?;
    std::fs::rename(&tmp_pub, &public).map_err(keygen)?;
    Ok(public)
}

fn build(cfg: &Config, store: &Store, a: &NewArgs) -> Result<record::Record, NewError> {
    if !banger::store::valid_name(&a.name) {
        return Err(NewError::Name(a.name.clone()));
    }
    if !banger::store::valid_name(&a.image) {
        return Err(NewError::Image(a.image.clone()));
    }
    // The image must exist now: a VM of an image that is not there could never start, and
    // every step after this one would fail on it.
    if !cfg.images_dir().join(&a.image).join("image.json").is_file() {
        return Err(NewError::NoImage {
            image: a.image.clone(),
            dir: cfg.images_dir(),
            hint: format!(
                "'sudo banger image build {} --debian bookworm' makes one from Debian's packages",
                a.image
            ),
        });
    }
    let public = match &a.ssh_key {
        Some(p) => p.clone(),
        None => default_key(cfg, store)?,
    };
    let pubkey = read_pubkey(&public)?;
    // The private key is the .pub file's sibling, when it has one.
    let private = public
        .to_str()
        .and_then(|s| s.strip_suffix(".pub"))
        .map(PathBuf::from)
        .filter(|p| p.exists());
    let mut rec = record::new("vm", &a.name);
    section::put(
        &mut rec,
        &Spec {
            image: Some(a.image.clone()),
            vcpus: Some(a.vcpus),
            mem_mib: Some(a.mem_mib),
            disk_size: a.disk_size,
            ssh_pubkey: Some(pubkey),
            ssh_key: private.map(|p| p.display().to_string()),
            created_at: Some(record::now_rfc3339()),
            autostart: a.autostart.then_some(true),
            extra: Default::default(),
        },
    );
    Ok(rec)
}

/// `banger-vm set --autostart|--no-autostart`: the spec's `autostart`, the rest of the spec
/// as it was.
pub fn set_autostart(
    rec: &mut record::Record,
    on: bool,
) -> Result<banger::step::Action, banger::step::StepError> {
    let mut spec = section::get::<Spec>(rec)?.unwrap_or_default();
    spec.autostart = on.then_some(true);
    section::put(rec, &spec);
    Ok(banger::step::Action::Save)
}

/// Makes the record, or with `--exists-ok` returns the stored one when NAME exists (also
/// when another `new` made it a moment ago: creation is atomic, so parallel `banger up`s of
/// one name agree on one record).
fn make(cfg: &Config, store: &Store, a: &NewArgs) -> Result<record::Record, NewError> {
    if a.exists_ok && banger::store::valid_name(&a.name) && store.exists(&a.name) {
        return Ok(store.load(&a.name)?);
    }
    let rec = build(cfg, store, a)?;
    match banger::timing::span("save", || store.create(&rec)) {
        Ok(()) => Ok(rec),
        Err(StoreError::Exists { .. }) if a.exists_ok => Ok(store.load(&a.name)?),
        Err(e) => Err(e.into()),
    }
}

pub fn run(cfg: &Config, store: &Store, a: NewArgs) -> ExitCode {
    let timing = banger::timing::Record::start();
    let made = make(cfg, store, &a);
    timing.finish(BIN, &a.name);
    let rec = match made {
        Ok(r) => r,
        Err(e) => {
            cli::report(BIN, &e);
            return ExitCode::from(cli::EXIT_FAILURE);
        }
    };
    match Writer::stdout().emit(&rec) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::report(BIN, &e);
            ExitCode::from(cli::EXIT_FAILURE)
        }
    }
}
