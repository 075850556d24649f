//! `GET export?from=T1&to=T2[&control=ID...][&host=ID...][&sample=N&seed=S]`:
//! the evidence bundle `custos-server export` writes (tar.gz), for admins
//! and auditors, so an auditor pulls signed evidence without a shell on the
//! server. The export is in the audit trail (and so in the log) under the
//! token's name.
//!
//! Invariants: viewers get 403 (the route's entry in [`super::routes`]); an
//! auditor's window bounds `from` and `to` ([`super::access`]), and a token
//! limited to controls is refused, since signed records carry every check
//! and cannot be cut down; the bundle is streamed from a file already
//! unlinked, so nothing is left behind.

use std::io::Read as _;

use axum::Extension;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use super::{HttpState, error, internal, parse_time};
use crate::export::{ExportError, ExportOptions, export};
use crate::store::tokens::Caller;

/// Bytes read from the bundle file per chunk sent.
const CHUNK: usize = 256 * 1024;

/// What the query names.
struct Asked {
    from: OffsetDateTime,
    to: OffsetDateTime,
    controls: Vec<String>,
    hosts: Vec<String>,
    sample: Option<(usize, String)>,
}

fn parse(query: &str, now: OffsetDateTime) -> Result<Asked, String> {
    let (mut from, mut to, mut sample, mut seed) = (None, None, None, None);
    let (mut controls, mut hosts) = (Vec::new(), Vec::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "from" => from = parse_time("from", Some(&v), now)?,
            "to" => to = parse_time("to", Some(&v), now)?,
            "control" => controls.push(v.into_owned()),
            "host" => hosts.push(v.into_owned()),
            "sample" => {
                sample = Some(v.parse::<usize>().map_err(|_| "sample must be a number of hosts".to_string())?)
            }
            "seed" => seed = Some(v.into_owned()),
            other => {
                return Err(format!(
                    "unknown query parameter {other:?}; allowed: from, to, control, host, sample, seed"
                ));
            }
        }
    }
    let from = from.ok_or("from is required")?;
    let to = to.unwrap_or(now);
    if to < from {
        return Err("to lies before from".into());
    }
    let sample = match (sample, seed) {
        (Some(n), Some(s)) => Some((n, s)),
        (None, None) => None,
        _ => return Err("sample and seed go together".into()),
    };
    Ok(Asked { from, to, controls, hosts, sample })
}

pub(super) async fn bundle(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let now = OffsetDateTime::now_utc();
    let asked = match parse(query.as_deref().unwrap_or(""), now) {
        Ok(a) => a,
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let dir = s.data_dir.join("exports");
    let mut name = [0u8; 16];
    if let Err(e) = getrandom::fill(&mut name) {
        return internal(e);
    }
    let out = dir.join(format!("{}.tar.gz", hex::encode(name)));
    let opts = ExportOptions {
        data_dir: s.data_dir.clone(),
        from: asked.from,
        to: asked.to,
        controls: asked.controls,
        hosts: asked.hosts,
        sample: asked.sample,
        by: caller.name.clone(),
        out: out.clone(),
        now,
        progress: false,
    };
    let written = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).map_err(|e| ExportError::Invalid(format!("{}: {e}", dir.display())))?;
        export(&opts)?;
        // Opened, then unlinked: the stream below holds the only reference.
        let file = std::fs::File::open(&opts.out)
            .map_err(|e| ExportError::Invalid(format!("{}: {e}", opts.out.display())))?;
        let _ = std::fs::remove_file(&opts.out);
        Ok::<_, ExportError>(file)
    })
    .await;
    let file = match written {
        Ok(Ok(f)) => f,
        Ok(Err(ExportError::Invalid(why))) => return error(StatusCode::BAD_REQUEST, &why),
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut file = file;
        loop {
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut r = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"custos-evidence.tar.gz\""),
    );
    r
}
