//! The PostgreSQL store's internal error, what kind of failure it is (worth another
//! try on a fresh connection, or not), and its translation into the `StoreError`s a
//! person reads, naming the store by its URL without the password.

use crate::store::StoreError;
use tokio_postgres::error::SqlState;

/// Internal error: from the client, from the pool, already a store error (stale
/// claim, not found ...), or a JSON column that does not parse.
#[derive(Debug)]
pub(crate) enum E {
    /// From tokio-postgres.
    Db(tokio_postgres::Error),
    /// From the pool (no connection could be had).
    Pool(deadpool_postgres::PoolError),
    /// Already a store error.
    Store(StoreError),
    /// A JSON value that could not be (de)serialised.
    Json(String),
}

impl From<tokio_postgres::Error> for E {
    fn from(e: tokio_postgres::Error) -> E {
        E::Db(e)
    }
}

impl From<StoreError> for E {
    fn from(e: StoreError) -> E {
        E::Store(e)
    }
}

impl From<serde_json::Error> for E {
    fn from(e: serde_json::Error) -> E {
        E::Json(e.to_string())
    }
}

/// Result of the internal functions.
pub(crate) type R<T> = Result<T, E>;

/// What a failure means for the call that met it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The connection is gone or the server is (re)starting: another connection may work.
    Connection,
    /// A deadlock or serialization failure: the transaction can simply run again.
    Retry,
    /// Anything else: report it.
    Fatal,
}

/// The kind of a failure.
pub(crate) fn classify(e: &E) -> Kind {
    match e {
        E::Db(err) => classify_db(err),
        E::Pool(deadpool_postgres::PoolError::Backend(err)) => classify_db(err),
        E::Pool(deadpool_postgres::PoolError::Timeout(_)) => Kind::Connection,
        E::Pool(_) | E::Store(_) | E::Json(_) => Kind::Fatal,
    }
}

fn classify_db(err: &tokio_postgres::Error) -> Kind {
    if let Some(code) = err.code() {
        return match code.code() {
            "40001" | "40P01" => Kind::Retry,
            // admin/crash shutdown, cannot connect now (starting up), too many
            // connections, and the connection exception class.
            "57P01" | "57P02" | "57P03" | "53300" => Kind::Connection,
            c if c.starts_with("08") => Kind::Connection,
            _ => Kind::Fatal,
        };
    }
    // No SQLSTATE: the socket, a closed connection, a timeout.
    if err.is_closed() || io_source(err) {
        return Kind::Connection;
    }
    Kind::Fatal
}

/// Whether an I/O error is somewhere below the client error (refused, reset, timed out).
fn io_source(err: &tokio_postgres::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    let text = err.to_string();
    text.contains("timed out") || text.contains("error connecting")
}

impl E {
    /// A short description for diagnostics.
    pub(crate) fn describe(&self) -> String {
        match self {
            E::Db(e) => db_text(e),
            E::Pool(deadpool_postgres::PoolError::Backend(e)) => db_text(e),
            E::Pool(e) => e.to_string(),
            E::Store(e) => e.to_string(),
            E::Json(m) => m.clone(),
        }
    }

    /// The store error a person reads; `shown` is the store's URL without password.
    pub(crate) fn into_store(self, shown: &str) -> StoreError {
        let db = match &self {
            E::Store(s) => return s.clone(),
            E::Json(m) => return StoreError::Other(format!("bad JSON in the store {shown}: {m}")),
            E::Pool(deadpool_postgres::PoolError::Backend(e)) | E::Db(e) => Some(e),
            E::Pool(_) => None,
        };
        let message = self.describe();
        let refused = |m: String| StoreError::Refused {
            store: shown.to_string(),
            message: m,
        };
        if let Some(code) = db.and_then(|e| e.code()) {
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            {
                return refused(format!(
                    "{message}; check the user and password in the URL (or ~/.pgpass, PGPASSWORD)"
                ));
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return refused(format!(
                    "{message}; create it first (createdb NAME, or CREATE DATABASE NAME) or name an existing one in the URL"
                ));
            }
            if code.code().starts_with("23") {
                return StoreError::Conflict(format!(
                    "the store {shown} refused a write (constraint): {message}"
                ));
            }
        }
        match classify(&self) {
            Kind::Connection => StoreError::Unreachable {
                store: shown.to_string(),
                message,
            },
            _ => StoreError::Other(format!("{shown}: {message}")),
        }
    }
}

/// The server's own message when there is one (without the client's "db error:"
/// prefix), else the client's text with its causes.
fn db_text(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}
