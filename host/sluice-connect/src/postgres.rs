//! `postgres-sink`: writes a topic into a PostgreSQL table, one transaction per batch that
//! also stores the topic position (table `sluice_sink_positions`), so a crash never loses or
//! repeats a row. Rows are passed as one JSON parameter and typed by the server with
//! `json_populate_recordset(NULL::table, …)`, so any column type PostgreSQL can read from
//! JSON works without the sink knowing the schema.
//!
//! Modes: `append` copies one row per record into the table; `upsert` copies the batch's
//! latest row per key into a session staging table and merges it with
//! `INSERT … SELECT … ON CONFLICT (key) DO UPDATE`; a tombstone deletes the key's row.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use futures::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, Statement};

use super::http_sink::value_json;
use super::sink::{Failure, Sink};
use super::{BatchSpec, SinkStart, TaskEnv, json_path};
use sluice_log::batch::StoredRecord;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Append,
    Upsert,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkSpec {
    pub topic: String,
    /// `postgres://user:pass@host:port/db` or `host=… user=… password=…`; never shown by GET.
    pub dsn: String,
    /// `table` or `schema.table`; must exist.
    pub table: String,
    #[serde(default)]
    pub mode: Mode,
    /// The conflict column of `upsert` (a primary key or unique column).
    #[serde(default)]
    pub key_column: Option<String>,
    /// Column name → where its value comes from: a dotted path into the JSON value
    /// (`user.name`), or `$key`, `$value` (the whole value), `$topic`, `$partition`,
    /// `$offset`, `$timestamp` (ms since the epoch).
    pub columns: BTreeMap<String, String>,
    #[serde(default)]
    pub batch: BatchSpec,
    /// Where refused records go; default `<topic>.sink.dlq`.
    #[serde(default)]
    pub dead_letter: Option<String>,
    #[serde(default)]
    pub start: SinkStart,
}

impl PostgresSinkSpec {
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter
            .clone()
            .unwrap_or_else(|| sluice_deploy::names::sink_dead_letter_topic(&self.topic))
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        tokio_postgres::Config::from_str(&self.dsn).map_err(|e| format!("dsn: {e}"))?;
        qualified(&self.table)?;
        if self.columns.is_empty() {
            return Err("columns: map at least one column to a field".into());
        }
        for c in self.columns.keys() {
            ident(c).map_err(|e| format!("columns: {e}"))?;
        }
        match (self.mode, &self.key_column) {
            (Mode::Upsert, None) => return Err("mode upsert needs key_column".into()),
            (Mode::Upsert, Some(k)) if !self.columns.contains_key(k) => {
                return Err(format!("key_column {k} is not one of the columns"));
            }
            _ => {}
        }
        self.batch.validate()
    }
}

/// A quoted identifier; refuses empty names and NUL.
fn ident(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(format!("{name:?} is not a valid identifier (1-63 bytes)"));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `table` or `schema.table`, quoted.
fn qualified(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 {
        return Err(format!("table {name:?}: use table or schema.table"));
    }
    let quoted: Result<Vec<String>, String> = parts.into_iter().map(ident).collect();
    Ok(quoted.map_err(|e| format!("table: {e}"))?.join("."))
}

const POSITIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS sluice_sink_positions (
    connector text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, topic, partition))";

/// Statements prepared on a connection once the table is there.
struct Prepared {
    /// Upsert only: staged rows into the table.
    merge: Option<Statement>,
    delete: Option<Statement>,
    position: Statement,
}

/// The last operation on one key within a batch: its place, the row (none = delete), the key.
type KeyOp = (usize, Option<Vec<Value>>, Value);

/// An open connection and, once the table is there, the sink's statements on it.
struct Conn {
    client: Client,
    prepared: Option<Prepared>,
}

/// The SQL of one sink, built once from its spec.
struct Sql {
    /// `COPY … FROM STDIN` into the table (append) or the session's staging table (upsert).
    copy: String,
    /// Upsert: creates the staging table of the session.
    stage: Option<String>,
    merge: Option<String>,
    delete: Option<String>,
}

pub struct PgSink {
    spec: PostgresSinkSpec,
    connector: String,
    partition: u32,
    conn: Option<Conn>,
    sql: Sql,
    /// Column names in the order of `spec.columns` (and of every row).
    columns: Vec<String>,
}

const STAGE: &str = "sluice_stage";

impl PgSink {
    pub fn new(env: &TaskEnv, spec: &PostgresSinkSpec, partition: u32) -> PgSink {
        // Identifiers were validated at deploy time.
        let table = qualified(&spec.table).unwrap_or_default();
        let cols: Vec<String> = spec
            .columns
            .keys()
            .map(|c| ident(c).unwrap_or_default())
            .collect();
        let list = cols.join(", ");
        let mut sql = Sql {
            copy: format!("COPY {table} ({list}) FROM STDIN"),
            stage: None,
            merge: None,
            delete: None,
        };
        if let (Mode::Upsert, Some(k)) = (spec.mode, &spec.key_column) {
            let key = ident(k).unwrap_or_default();
            let sets: Vec<String> = cols
                .iter()
                .filter(|c| **c != key)
                .map(|c| format!("{c} = EXCLUDED.{c}"))
                .collect();
            let action = if sets.is_empty() {
                "DO NOTHING".to_string()
            } else {
                format!("DO UPDATE SET {}", sets.join(", "))
            };
            sql.copy = format!("COPY {STAGE} ({list}) FROM STDIN");
            sql.stage = Some(format!(
                "CREATE TEMP TABLE IF NOT EXISTS {STAGE} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            ));
            sql.merge = Some(format!(
                "INSERT INTO {table} ({list}) SELECT {list} FROM {STAGE} ON CONFLICT ({key}) {action}"
            ));
            sql.delete = Some(format!(
                "DELETE FROM {table} t USING json_populate_recordset(NULL::{table}, $1::json) d WHERE t.{key} = d.{key}"
            ));
        }
        PgSink {
            spec: spec.clone(),
            connector: env.name.clone(),
            partition,
            conn: None,
            sql,
            columns: spec.columns.keys().cloned().collect(),
        }
    }

    /// The open connection, connecting if there is none.
    async fn conn(&mut self) -> Result<&mut Conn, tokio_postgres::Error> {
        match self.conn.take() {
            Some(c) if !c.client.is_closed() => Ok(self.conn.insert(c)),
            _ => {
                let (client, conn) = tokio_postgres::connect(&self.spec.dsn, NoTls).await?;
                let name = self.connector.clone();
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(connector = %name, error = %e, "postgres connection ended");
                    }
                });
                // Sinks starting together race on CREATE TABLE IF NOT EXISTS; the loser's
                // error only says that the table is there now.
                if let Err(e) = client.batch_execute(POSITIONS_DDL).await
                    && !matches!(
                        e.code(),
                        Some(&SqlState::UNIQUE_VIOLATION) | Some(&SqlState::DUPLICATE_TABLE)
                    )
                {
                    return Err(e);
                }
                Ok(self.conn.insert(Conn {
                    client,
                    prepared: None,
                }))
            }
        }
    }

    /// The row of one record, one value per column; a tombstone has no row.
    fn row(&self, r: &StoredRecord) -> Result<Option<Vec<Value>>, String> {
        let Some(value) = r.value.as_deref() else {
            return Ok(None);
        };
        let doc = value_json(Some(value));
        let mut row = Vec::with_capacity(self.columns.len());
        for src in self.spec.columns.values() {
            let v = match src.as_str() {
                "$key" => r.key.as_deref().map_or(Value::Null, |k| {
                    Value::String(String::from_utf8_lossy(k).into_owned())
                }),
                "$value" => doc.clone(),
                "$topic" => Value::String(self.spec.topic.clone()),
                "$partition" => Value::from(self.partition),
                "$offset" => Value::from(r.offset),
                "$timestamp" => Value::from(r.timestamp),
                path => {
                    if !doc.is_object() {
                        return Err(format!(
                            "offset {}: value is not a JSON object, cannot take field {path}",
                            r.offset
                        ));
                    }
                    json_path(&doc, path).cloned().unwrap_or(Value::Null)
                }
            };
            row.push(v);
        }
        Ok(Some(row))
    }

    fn key_index(&self) -> Option<usize> {
        let k = self.spec.key_column.as_ref()?;
        self.columns.iter().position(|c| c == k)
    }

    /// The key of a record for upsert: the key column's value, or the record key.
    fn key_of(&self, r: &StoredRecord, row: Option<&Vec<Value>>) -> Option<Value> {
        match row.and_then(|row| row.get(self.key_index()?)) {
            Some(v) if !v.is_null() => Some(v.clone()),
            _ => r
                .key
                .as_deref()
                .map(|k| Value::String(String::from_utf8_lossy(k).into_owned())),
        }
    }

    /// COPY text of the rows to write, and the keys to delete, for a batch.
    fn plan(&self, records: &[StoredRecord]) -> Result<(Vec<u8>, Vec<Value>), String> {
        let mut copy = Vec::with_capacity(records.len() * 160);
        if self.spec.mode == Mode::Append {
            for r in records {
                if let Some(row) = self.row(r)? {
                    copy_row(&mut copy, &row);
                }
            }
            return Ok((copy, Vec::new()));
        }
        // Upsert: the last record per key wins within the batch, as it would across batches.
        let key_col = self.spec.key_column.clone().unwrap_or_default();
        let key_idx = self.key_index();
        let mut last: HashMap<String, KeyOp> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let row = self.row(r)?;
            let Some(key) = self.key_of(r, row.as_ref()) else {
                return Err(format!(
                    "offset {}: no value for key column {key_col}",
                    r.offset
                ));
            };
            last.insert(key.to_string(), (i, row, key));
        }
        let mut ops: Vec<KeyOp> = last.into_values().collect();
        ops.sort_by_key(|(i, _, _)| *i);
        let mut deletes = Vec::new();
        for (_, row, key) in ops {
            match row {
                Some(mut row) => {
                    if let Some(k) = key_idx.and_then(|k| row.get_mut(k)) {
                        *k = key;
                    }
                    copy_row(&mut copy, &row);
                }
                None => {
                    let mut d = Map::new();
                    d.insert(key_col.clone(), key);
                    deletes.push(Value::Object(d));
                }
            }
        }
        Ok((copy, deletes))
    }

    /// One transaction: deletes, the rows, the position. Failures to connect or prepare are
    /// retried; what the data statements refuse is classified (see [`classify`]).
    async fn write(
        &mut self,
        copy: Vec<u8>,
        deletes: Vec<Value>,
        next: u64,
    ) -> Result<(), Failure> {
        let connector = self.connector.clone();
        let topic = self.spec.topic.clone();
        let partition = self.partition as i32;
        let copy_sql = self.sql.copy.clone();
        let (stage, merge, delete) = (
            self.sql.stage.clone(),
            self.sql.merge.clone(),
            self.sql.delete.clone(),
        );
        let retry = |e: tokio_postgres::Error| Failure::Retry(describe(&e));
        let conn = self.conn().await.map_err(retry)?;
        // Prepared once per connection; fails (and is retried) while the table is missing.
        let prepared = match conn.prepared.take() {
            Some(p) => p,
            None => {
                if let Some(stage) = &stage {
                    conn.client.batch_execute(stage).await.map_err(retry)?;
                }
                prepare(&conn.client, merge.as_deref(), delete.as_deref())
                    .await
                    .map_err(retry)?
            }
        };
        let st = conn.prepared.insert(prepared);
        let tx = conn.client.transaction().await.map_err(retry)?;
        if !deletes.is_empty()
            && let Some(d) = &st.delete
        {
            tx.execute(d, &[&Value::Array(deletes)])
                .await
                .map_err(classify)?;
        }
        if !copy.is_empty() {
            let sink = tx
                .copy_in::<_, bytes::Bytes>(copy_sql.as_str())
                .await
                .map_err(retry)?;
            futures::pin_mut!(sink);
            sink.send(bytes::Bytes::from(copy))
                .await
                .map_err(classify)?;
            sink.finish().await.map_err(classify)?;
            if let Some(m) = &st.merge {
                tx.execute(m, &[]).await.map_err(classify)?;
            }
        }
        tx.execute(
            &st.position,
            &[&connector, &topic, &partition, &(next as i64)],
        )
        .await
        .map_err(retry)?;
        tx.commit().await.map_err(classify)
    }
}

/// One row in COPY text format: tab-separated, `\N` for null, backslash escapes.
fn copy_row(out: &mut Vec<u8>, row: &[Value]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match v {
            Value::Null => out.extend_from_slice(b"\\N"),
            Value::String(s) => copy_text(out, s),
            Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            other => copy_text(out, &other.to_string()),
        }
    }
    out.push(b'\n');
}

fn copy_text(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

async fn prepare(
    client: &Client,
    merge: Option<&str>,
    delete: Option<&str>,
) -> Result<Prepared, tokio_postgres::Error> {
    let merge = match merge {
        Some(sql) => Some(client.prepare(sql).await?),
        None => None,
    };
    let delete = match delete {
        Some(sql) => Some(client.prepare(sql).await?),
        None => None,
    };
    let position = client
        .prepare(
            "INSERT INTO sluice_sink_positions (connector, topic, partition, next_offset)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (connector, topic, partition)
             DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
        )
        .await?;
    Ok(Prepared {
        merge,
        delete,
        position,
    })
}

/// Data the table refuses (bad type, constraint) is the record's fault; everything else
/// (connection, missing table, permissions, contention) is retried.
fn classify(e: tokio_postgres::Error) -> Failure {
    if e.is_closed() {
        return Failure::Retry(describe(&e));
    }
    let msg = describe(&e);
    match e.code() {
        Some(code) if is_data_error(code) => Failure::Reject(msg),
        _ => Failure::Retry(msg),
    }
}

/// The server's message and SQLSTATE, or the client-side error with its cause.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("postgres: {} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("postgres: {e}: {cause}"),
            None => format!("postgres: {e}"),
        },
    }
}

fn is_data_error(code: &SqlState) -> bool {
    let c = code.code();
    // Class 22: data exception; class 23: integrity constraint violation.
    c.starts_with("22") || c.starts_with("23")
}

#[async_trait::async_trait]
impl Sink for PgSink {
    async fn load_position(&mut self) -> Result<Option<u64>, String> {
        let connector = self.connector.clone();
        let topic = self.spec.topic.clone();
        let partition = self.partition as i32;
        let conn = self.conn().await.map_err(|e| describe(&e))?;
        let row = conn
            .client
            .query_opt(
                "SELECT next_offset FROM sluice_sink_positions
                 WHERE connector = $1 AND topic = $2 AND partition = $3",
                &[&connector, &topic, &partition],
            )
            .await
            .map_err(|e| describe(&e))?;
        match row {
            None => Ok(None),
            Some(r) => r
                .try_get::<_, i64>(0)
                .map(|n| Some(n.max(0) as u64))
                .map_err(|e| format!("sluice_sink_positions.next_offset: {e}")),
        }
    }

    async fn deliver(&mut self, records: &[StoredRecord], next: u64) -> Result<(), Failure> {
        let (rows, deletes) = self.plan(records).map_err(Failure::Reject)?;
        self.write(rows, deletes, next).await.inspect_err(|f| {
            if matches!(f, Failure::Retry(_)) {
                // Start from a fresh connection next time.
                self.conn = None;
            }
        })
    }

    async fn store_position(&mut self, next: u64) -> Result<(), String> {
        self.write(Vec::new(), Vec::new(), next).await.map_err(|f| {
            self.conn = None;
            match f {
                Failure::Retry(e) | Failure::Reject(e) => e,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(qualified("events").unwrap(), "\"events\"");
        assert_eq!(qualified("app.ev\"x").unwrap(), "\"app\".\"ev\"\"x\"");
        assert!(qualified("a.b.c").is_err());
        assert!(qualified("").is_err());
    }
}
