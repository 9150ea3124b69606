//! `GET /v1/transforms/{name}/state`: what a stateful transform holds, one key or a page
//! of keys by prefix, as of the last completed read of each partition (a read in progress
//! may still be undone). Operator and admin roles only: state holds record contents.
//!
//! State is scoped per input partition, so a key may be held by several partitions; a key
//! lookup answers every partition that holds it, a listing walks the partitions in order
//! and hands back a cursor (`next`) for the following page.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sluice_runtime::state::StateStore;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, State, blocking};

/// Entries per page unless `limit` says otherwise, and the most one page may hold.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Which state to read: `key` (or `key_base64`) for one key, else a page of the keys that
/// start with `prefix` (or `prefix_base64`; empty = all), continuing after `after`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// One key, as UTF-8.
    key: Option<String>,
    /// One key, base64 (binary keys).
    key_base64: Option<String>,
    /// List the keys starting with this (UTF-8).
    prefix: Option<String>,
    /// List the keys starting with this (base64).
    prefix_base64: Option<String>,
    /// Only this input partition.
    partition: Option<u32>,
    /// Start a listing at this partition (from a previous page's `next`).
    from_partition: Option<u32>,
    /// Resume a listing after this key of its first partition (from a previous page's
    /// `next`).
    after: Option<String>,
    after_base64: Option<String>,
    /// Entries per page (1..=1000, default 100).
    limit: Option<usize>,
}

/// One key of one partition's state.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateEntry {
    pub partition: u32,
    /// The key, when it is printable UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The key in base64, when it is not printable UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// How `value` shows the bytes: `json` (the value is a JSON document, shown as
    /// JSON), `utf8` (text) or `base64`.
    pub encoding: &'static str,
    pub value: serde_json::Value,
    /// The value's size in bytes.
    pub bytes: usize,
    /// The parts of a key made by the SDKs' window and session helpers
    /// (`name 0x00 [window end] key`), when it reads as one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<KeyParts>,
}

/// A composite state key, taken apart: which helper's state (`scope`, e.g. a window's
/// name), the window it belongs to (windows only), and the record key it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KeyParts {
    pub scope: String,
    /// The end of the window (ms since the epoch), for window state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_end: Option<i64>,
    /// The record key, when it is printable UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
}

/// Reads a key as the SDKs' helpers compose them: a printable name, a 0 byte, then for
/// windows the window's end (8 bytes, big-endian with the sign bit flipped, so that keys
/// sort by time), then the record key. Window ends are recognised by their first byte
/// (0x80: a time after 1970) and a plausible range (before 2200).
fn key_parts(key: &[u8]) -> Option<(String, Option<i64>, &[u8])> {
    let zero = key.iter().position(|b| *b == 0)?;
    let scope = printable(&key[..zero]).filter(|s| !s.is_empty())?;
    let rest = &key[zero + 1..];
    const YEAR_2200_MS: i64 = 7_258_118_400_000;
    let window_end = rest
        .get(..8)
        .filter(|b| b[0] == 0x80)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(|b| (u64::from_be_bytes(b) ^ (1 << 63)) as i64)
        .filter(|t| (0..YEAR_2200_MS).contains(t));
    let user = if window_end.is_some() {
        &rest[8..]
    } else {
        rest
    };
    Some((scope.to_owned(), window_end, user))
}

/// Where the next page starts: pass these as `from_partition` and `after`/`after_base64`
/// with the same `prefix` (and `partition`, if one was given).
#[derive(Debug, Serialize, ToSchema)]
pub struct StateCursor {
    pub from_partition: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_base64: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatePage {
    pub transform: String,
    pub entries: Vec<StateEntry>,
    /// Set when more entries may follow.
    pub next: Option<StateCursor>,
}

fn either(
    text: Option<String>,
    b64: Option<String>,
    name: &str,
) -> Result<Option<Vec<u8>>, ApiError> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(format!(
            "give `{name}` or `{name}_base64`, not both"
        ))),
        (Some(t), None) => Ok(Some(t.into_bytes())),
        (None, Some(b)) => B64
            .decode(b.as_bytes())
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("{name}_base64: invalid base64: {e}"))),
        (None, None) => Ok(None),
    }
}

fn printable(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
}

fn entry(partition: u32, raw_key: &[u8], value: &[u8]) -> StateEntry {
    let key = raw_key;
    let (encoding, shown) = match std::str::from_utf8(value) {
        Ok(s) => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v) => ("json", v),
            Err(_) => ("utf8", serde_json::Value::String(s.to_owned())),
        },
        Err(_) => ("base64", serde_json::Value::String(B64.encode(value))),
    };
    let (key, key_base64) = match printable(key) {
        Some(k) => (Some(k.to_owned()), None),
        None => (None, Some(B64.encode(key))),
    };
    let parts = key_parts(raw_key).map(|(scope, window_end, user)| {
        let (key, key_base64) = match printable(user) {
            Some(k) => (Some(k.to_owned()), None),
            None => (None, Some(B64.encode(user))),
        };
        KeyParts {
            scope,
            window_end,
            key,
            key_base64,
        }
    });
    StateEntry {
        partition,
        key,
        key_base64,
        encoding,
        value: shown,
        bytes: value.len(),
        parts,
    }
}

#[utoipa::path(
    get,
    path = "/v1/transforms/{name}/state",
    params(("name" = String, Path), StateQuery),
    responses(
        (status = 200, description = "one key (every partition holding it) or a page of keys", body = StatePage),
        (status = 400, description = "invalid request (body, path or query)", body = crate::error::ErrorBody),
        (status = 404, description = "unknown transform, partition or key", body = crate::error::ErrorBody),
        (status = 409, description = "the transform keeps no state", body = crate::error::ErrorBody)
    )
)]
pub async fn read(
    state: State,
    name: Result<Path<String>, PathRejection>,
    query: Result<Query<StateQuery>, QueryRejection>,
) -> Result<Json<StatePage>, ApiError> {
    let name = name?.0;
    let q = query?.0;
    let t = state.pipelines.get(&name)?;
    if !t.is_stateful() {
        return Err(not_stateful(&name));
    }
    let mut partitions = t.partitions();
    partitions.sort_unstable();
    let ask = Ask::of(&name, q, partitions)?;
    // Reading takes the stores' locks, which plugin calls hold briefly: off the reactor.
    Ok(Json(
        blocking(move || collect(&|p| t.state_of(p), name, ask)).await?,
    ))
}

pub(crate) fn not_stateful(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_stateful",
        format!("transform {name} runs a plugin that keeps no state"),
    )
}

/// A partition's store, if this process holds it.
pub(crate) type Stores<'a> = dyn Fn(u32) -> Option<Arc<Mutex<StateStore>>> + 'a;

impl Ask {
    /// Checks a state query against the deployment's `partitions` (sorted).
    pub(crate) fn of(name: &str, q: StateQuery, partitions: Vec<u32>) -> Result<Ask, ApiError> {
        let key = either(q.key, q.key_base64, "key")?;
        let prefix = either(q.prefix, q.prefix_base64, "prefix")?;
        let after = either(q.after, q.after_base64, "after")?;
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit must be 1..={MAX_LIMIT}, not {limit}"
            )));
        }
        if key.is_some() && (prefix.is_some() || after.is_some()) {
            return Err(ApiError::bad_request(
                "give `key` for one key or `prefix`/`after` for a listing, not both",
            ));
        }
        for p in [q.partition, q.from_partition].into_iter().flatten() {
            if !partitions.contains(&p) {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_partition",
                    format!("transform {name} has no partition {p}"),
                ));
            }
        }
        let first = q.from_partition.or(q.partition).unwrap_or(0);
        Ok(Ask {
            key,
            prefix,
            after,
            only: q.partition,
            first,
            partitions,
            limit,
        })
    }
}

/// Keys visited at most by one search for a record key (a walk over the state; ~1 s).
const MAX_WALK: usize = 5_000_000;

/// The entries whose composite key (see `key_parts`) is about record key `key`, up to
/// `limit`.
fn by_record_key(
    stores: &Stores<'_>,
    partitions: &[u32],
    only: Option<u32>,
    key: &[u8],
    limit: usize,
) -> Result<Vec<StateEntry>, ApiError> {
    let mut found = Vec::new();
    let mut walked = 0;
    for &p in partitions {
        if only.is_some_and(|only| only != p) {
            continue;
        }
        let Some(store) = stores(p) else { continue };
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .page(&[], after.as_deref(), 1000)
                .map_err(store_failed)?;
            walked += page.len();
            for (k, v) in &page {
                if key_parts(k).is_some_and(|(_, _, user)| user == key) {
                    found.push(entry(p, k, v));
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            match page.last() {
                Some((k, _)) if page.len() == 1000 && walked < MAX_WALK => {
                    after = Some(k.clone());
                }
                _ => break,
            }
        }
    }
    Ok(found)
}

/// A state store on disk that could not be read.
fn store_failed(e: String) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "state_store", e)
}

/// A validated state read.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub key: Option<Vec<u8>>,
    pub prefix: Option<Vec<u8>>,
    pub after: Option<Vec<u8>>,
    /// Only this partition.
    pub only: Option<u32>,
    /// The listing's first partition.
    pub first: u32,
    /// Every partition of the deployment, in order.
    pub partitions: Vec<u32>,
    pub limit: usize,
}

/// Answers a state read from the stores `stores` finds.
pub(crate) fn collect(stores: &Stores<'_>, name: String, ask: Ask) -> Result<StatePage, ApiError> {
    let Ask {
        key,
        prefix,
        after,
        only,
        first,
        partitions,
        limit,
    } = ask;
    if let Some(key) = key {
        let mut entries = Vec::new();
        for &p in &partitions {
            if only.is_some_and(|only| only != p) {
                continue;
            }
            let Some(store) = stores(p) else { continue };
            let v = store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .committed_get(&key)
                .map_err(store_failed)?;
            if let Some(v) = v {
                entries.push(entry(p, &key, &v));
            }
        }
        if entries.is_empty() {
            // Not a whole key: the record key inside the helpers' composite keys (every
            // window of `alice`, her sessions), found by a walk over the state.
            entries = by_record_key(stores, &partitions, only, &key, limit)?;
        }
        if entries.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_key",
                format!(
                    "transform {name} holds no state under that key, nor composite keys (windows, sessions) of it"
                ),
            ));
        }
        return Ok(StatePage {
            transform: name,
            entries,
            next: None,
        });
    }

    // A listing: this partition from `after`, then (unless one partition was asked) the
    // following partitions from their first key, until the page is full.
    let prefix = prefix.unwrap_or_default();
    let mut entries = Vec::new();
    let mut next = None;
    let listed: Vec<u32> = partitions
        .into_iter()
        .filter(|p| *p >= first && only.is_none_or(|only| only == *p))
        .collect();
    for (i, &p) in listed.iter().enumerate() {
        let Some(store) = stores(p) else { continue };
        let want = limit - entries.len();
        let from = if p == first { after.as_deref() } else { None };
        // One more than needed tells whether the partition has more.
        let mut page = store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .page(&prefix, from, want + 1)
            .map_err(store_failed)?;
        let more = page.len() > want;
        page.truncate(want);
        for (k, v) in &page {
            entries.push(entry(p, k, v));
        }
        if more {
            let last = page.last().map(|(k, _)| k.as_slice()).unwrap_or_default();
            let (after, after_base64) = match printable(last) {
                Some(s) => (Some(s.to_owned()), None),
                None => (None, Some(B64.encode(last))),
            };
            next = Some(StateCursor {
                from_partition: p,
                after,
                after_base64,
            });
            break;
        }
        if entries.len() == limit {
            // Full exactly at a partition's end: the next page starts at the next one.
            next = listed.get(i + 1).map(|&from_partition| StateCursor {
                from_partition,
                after: None,
                after_base64: None,
            });
            break;
        }
    }
    Ok(StatePage {
        transform: name,
        entries,
        next,
    })
}
