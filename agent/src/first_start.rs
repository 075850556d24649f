//! Enrollment on first start: the material IT hands over at install time
//! (server address, the CA certificate, a one-time enrollment token), used
//! once by `custos-agent run` and then destroyed.
//!
//! The material comes from the environment (`CUSTOS_SERVER`,
//! `CUSTOS_ENROLL_TOKEN`, `CUSTOS_CA_CERT`, optional `CUSTOS_DISPLAY_NAME`)
//! or from a `KEY=value` file, by default [`ENROLL_FILE`], which the package
//! writes from the same variables at install (the way Wazuh and Fleet take
//! theirs). The file is read by the agent itself rather than loaded by the
//! service manager, so the token never sits in the process environment and
//! the agent can delete the file once the token is spent.
//!
//! Invariants:
//! - an enrolled state dir is never enrolled again: material found beside
//!   one is ignored (and a file of it deleted), so a reinstall or an
//!   upgrade keeps the agent's identity;
//! - without an identity and without material the agent does not collect:
//!   it says what to provide ([`FirstStartError::NoMaterial`]);
//! - a file readable by anyone but its owner is refused, not used: it holds
//!   a secret;
//! - the file is deleted only after the enrollment it served succeeded; a
//!   failed one leaves it for the next start. A file that cannot be deleted
//!   is logged, never a reason not to collect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::deadlines::Deadlines;
use crate::enroll::{EnrollError, enroll_within};
use crate::state::{AgentIdentity, StateDir};

/// Where the package puts the enrollment material.
pub const ENROLL_FILE: &str = "/etc/custos-agent/enroll.env";

/// The variables that make up the material; all three are required.
const SERVER: &str = "CUSTOS_SERVER";
const TOKEN: &str = "CUSTOS_ENROLL_TOKEN";
const CA_CERT: &str = "CUSTOS_CA_CERT";
const DISPLAY_NAME: &str = "CUSTOS_DISPLAY_NAME";
const REQUIRED: [&str; 3] = [SERVER, TOKEN, CA_CERT];

#[derive(Debug, thiserror::Error)]
pub enum FirstStartError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: line {line}: cannot read {text:?}: expected KEY=value")]
    Syntax { path: PathBuf, line: usize, text: String },
    #[error("{path} is readable by others (mode {mode:o}); it holds an enrollment token: chmod 600 it")]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{origin} sets {} but not {}: enrollment needs {}", .present.join(", "), .missing.join(", "), REQUIRED.join(", "))]
    Incomplete { origin: Origin, present: Vec<&'static str>, missing: Vec<&'static str> },
    #[error(
        "{state} holds no enrolled agent and there is no enrollment material: write {} \
         (mode 0600) to {file}, or run `custos-agent enroll`",
        REQUIRED.join(", ")
    )]
    NoMaterial { state: PathBuf, file: PathBuf },
    #[error("enrolling with the material from {origin}: {source}")]
    Enroll { origin: Origin, source: EnrollError },
}

impl FirstStartError {
    /// Whether starting again unchanged cannot help (nothing to enroll
    /// with, or material that is wrong), as opposed to a server away.
    pub fn needs_a_person(&self) -> bool {
        match self {
            FirstStartError::Enroll { source, .. } => {
                matches!(source, EnrollError::Refused(_) | EnrollError::BadServer(_))
            }
            // Local files (the enrollment file, the CA certificate) do not
            // mend themselves: a person must fix them.
            _ => true,
        }
    }
}

/// Where material came from, named in messages and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Environment,
    File(PathBuf),
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Environment => f.write_str("the environment"),
            Origin::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Everything enrollment needs, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub server: String,
    pub token: String,
    /// The server's CA certificate (a PEM file), obtained out of band.
    pub ca_cert: PathBuf,
    pub display_name: Option<String>,
    pub origin: Origin,
}

/// What [`ensure_enrolled`] found or did.
#[derive(Debug)]
pub enum FirstStart {
    /// The state dir already held an identity; material beside it, if
    /// any, was ignored (and a file of it deleted).
    AlreadyEnrolled { ignored: Option<Origin> },
    /// Enrolled now with the material from `origin`, which is spent.
    Enrolled { identity: AgentIdentity, origin: Origin },
}

/// The material named by `vars`, or `None` when they name none of it.
/// Pure: `vars` come from the environment or from a file.
pub fn material_from(
    vars: &BTreeMap<String, String>,
    origin: Origin,
) -> Result<Option<Material>, FirstStartError> {
    let get = |k: &str| vars.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let present: Vec<&'static str> = REQUIRED.into_iter().filter(|k| get(k).is_some()).collect();
    let missing: Vec<&'static str> = REQUIRED.into_iter().filter(|k| get(k).is_none()).collect();
    match (present.is_empty(), missing.is_empty()) {
        (true, _) => Ok(None),
        (false, false) => Err(FirstStartError::Incomplete { origin, present, missing }),
        (false, true) => Ok(Some(Material {
            server: get(SERVER).unwrap_or_default().to_string(),
            token: get(TOKEN).unwrap_or_default().to_string(),
            ca_cert: PathBuf::from(get(CA_CERT).unwrap_or_default()),
            display_name: get(DISPLAY_NAME).map(str::to_string),
            origin,
        })),
    }
}

/// The variables of an enrollment file's text (`KEY=value` lines, `#`
/// comments, values optionally quoted, as systemd's `EnvironmentFile=`
/// and `.env` files have them). Pure.
pub fn parse_enroll_file(path: &Path, text: &str) -> Result<BTreeMap<String, String>, FirstStartError> {
    let mut vars = BTreeMap::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        let (key, value) = item.map_err(|e| syntax(path, text, &e))?;
        vars.insert(key, value);
    }
    Ok(vars)
}

/// A parse error as the line it is on (dotenvy names the line's text and
/// its byte offset, not its number).
fn syntax(path: &Path, text: &str, e: &dotenvy::Error) -> FirstStartError {
    let bad = match e {
        dotenvy::Error::LineParse(line, _) => line.clone(),
        other => other.to_string(),
    };
    let first = bad.lines().next().unwrap_or_default();
    let line = text.lines().position(|l| !first.is_empty() && l.contains(first)).map_or(0, |i| i + 1);
    FirstStartError::Syntax { path: path.to_path_buf(), line, text: first.to_string() }
}

/// The variables of the enrollment file at `path`, or `None` when there
/// is none. Refuses a file others may read.
pub fn read_enroll_file(path: &Path) -> Result<Option<BTreeMap<String, String>>, FirstStartError> {
    let io = |source| FirstStartError::Io { path: path.to_path_buf(), source };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(FirstStartError::Exposed { path: path.to_path_buf(), mode });
        }
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    parse_enroll_file(path, &text).map(Some)
}

/// Makes sure `state` holds an enrolled agent: as it is when it does,
/// else by enrolling with the material from the environment (`env`, the
/// process's variables) or, when that names none, from `file`; the agent
/// is shown as `host_name` unless the material names it.
///
/// Checklist: already enrolled → ignore material, delete its file; else
/// find material (environment first, then file) or say what is missing;
/// read the CA certificate; enroll; delete the file that served.
pub async fn ensure_enrolled(
    state: &StateDir,
    env: &BTreeMap<String, String>,
    file: &Path,
    host_name: &str,
    deadlines: &Deadlines,
) -> Result<FirstStart, FirstStartError> {
    let from_env = material_from(env, Origin::Environment)?;
    if state.identity().exists() {
        let ignored = match from_env {
            Some(_) => Some(Origin::Environment),
            None => discard_file(file),
        };
        return Ok(FirstStart::AlreadyEnrolled { ignored });
    }
    let material = match from_env {
        Some(m) => m,
        None => {
            let vars = read_enroll_file(file)?.unwrap_or_default();
            material_from(&vars, Origin::File(file.to_path_buf()))?.ok_or_else(|| {
                FirstStartError::NoMaterial { state: state.0.clone(), file: file.to_path_buf() }
            })?
        }
    };
    let identity = enroll_with(state, &material, host_name, deadlines).await?;
    if let Origin::File(path) = &material.origin {
        remove(path);
    }
    Ok(FirstStart::Enrolled { identity, origin: material.origin })
}

/// Enrolls `state` with `material`.
async fn enroll_with(
    state: &StateDir,
    material: &Material,
    host_name: &str,
    deadlines: &Deadlines,
) -> Result<AgentIdentity, FirstStartError> {
    let ca = std::fs::read_to_string(&material.ca_cert)
        .map_err(|source| FirstStartError::Io { path: material.ca_cert.clone(), source })?;
    let name = material.display_name.as_deref().unwrap_or(host_name);
    enroll_within(state, &material.server, &material.token, &ca, name, deadlines)
        .await
        .map_err(|source| FirstStartError::Enroll { origin: material.origin.clone(), source })
}

/// Deletes an enrollment file found beside an enrolled state dir: its
/// token is not needed, and a secret left lying about is one to steal.
fn discard_file(file: &Path) -> Option<Origin> {
    if !file.exists() {
        return None;
    }
    remove(file);
    Some(Origin::File(file.to_path_buf()))
}

/// Deletes a spent or ignored enrollment file. A failure is logged, not
/// returned: the agent is enrolled either way, and an error here would
/// keep it from ever collecting, at every start, over a file.
fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "could not delete the enrollment file: delete it by hand");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn material_needs_all_three_variables_or_none() {
        assert_eq!(material_from(&vars(&[("PATH", "/usr/bin")]), Origin::Environment).unwrap(), None);
        let full =
            vars(&[(SERVER, "custos.example:7443"), (TOKEN, "tok"), (CA_CERT, "/etc/custos-agent/ca.pem")]);
        let m = material_from(&full, Origin::Environment).unwrap().unwrap();
        assert_eq!((m.server.as_str(), m.token.as_str()), ("custos.example:7443", "tok"));
        assert_eq!(m.display_name, None);
        let e = material_from(&vars(&[(SERVER, "s:1"), (TOKEN, " ")]), Origin::Environment).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("sets CUSTOS_SERVER but not CUSTOS_ENROLL_TOKEN, CUSTOS_CA_CERT"), "{text}");
        assert!(matches!(e, FirstStartError::Incomplete { .. }) && e.needs_a_person());
    }

    #[test]
    fn enroll_files_read_as_systemd_environment_files() {
        let path = Path::new("enroll.env");
        let text = "# written by the package\nCUSTOS_SERVER=custos.example:7443\n\
                    CUSTOS_ENROLL_TOKEN=\"abc def\"\nCUSTOS_CA_CERT='/etc/custos-agent/ca.pem'\n";
        let v = parse_enroll_file(path, text).unwrap();
        assert_eq!(v[TOKEN], "abc def");
        assert_eq!(v[CA_CERT], "/etc/custos-agent/ca.pem");
        let e = parse_enroll_file(path, "CUSTOS_SERVER=a:1\nnot a line\n").unwrap_err();
        match e {
            FirstStartError::Syntax { line, text, .. } => {
                assert_eq!((line, text.as_str()), (2, "not a line"))
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn a_file_others_can_read_is_refused_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enroll.env");
        assert!(read_enroll_file(&path).unwrap().is_none());
        std::fs::write(&path, "CUSTOS_SERVER=a:1\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = read_enroll_file(&path).unwrap_err();
            assert!(e.to_string().contains("mode 644") && e.to_string().contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(read_enroll_file(&path).unwrap().unwrap()[SERVER], "a:1");
    }

    #[tokio::test]
    async fn an_enrolled_state_dir_ignores_material_and_deletes_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir(dir.path().join("state"));
        state.create().unwrap();
        std::fs::write(state.identity(), "agent_id = \"a\"\n").unwrap();
        let file = dir.path().join("enroll.env");
        std::fs::write(&file, "CUSTOS_SERVER=a:1\nCUSTOS_ENROLL_TOKEN=t\nCUSTOS_CA_CERT=/nowhere\n").unwrap();
        let got =
            ensure_enrolled(&state, &BTreeMap::new(), &file, "host", &Deadlines::default()).await.unwrap();
        assert!(matches!(got, FirstStart::AlreadyEnrolled { ignored: Some(Origin::File(_)) }), "{got:?}");
        assert!(!file.exists(), "the unused token stays on disk");
    }

    #[tokio::test]
    async fn without_identity_or_material_it_says_what_to_provide() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir(dir.path().join("state"));
        let file = dir.path().join("enroll.env");
        let e = ensure_enrolled(&state, &BTreeMap::new(), &file, "host", &Deadlines::default())
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, FirstStartError::NoMaterial { .. }) && e.needs_a_person(), "{text}");
        assert!(text.contains("CUSTOS_ENROLL_TOKEN") && text.contains("enroll.env"), "{text}");
        assert!(!state.0.exists(), "nothing is created without enrollment");
    }
}
