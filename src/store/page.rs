//! Keyset pagination shared by every list, for the HTTP API and the CLI alike: a
//! bounded page size, an opaque cursor, and the `{items, nextCursor}` shape.
//!
//! Lists are newest first on (timestamp, id). A cursor is the sort key of the last
//! row of a page, and the next page holds the rows strictly after it in that order,
//! so rows that arrive between two fetches neither shift nor repeat a page.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDateTime};
use sea_orm::sea_query::{Expr, ExprTrait, IntoColumnRef, SimpleExpr};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

/// How many rows a page holds: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] unless asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u64);

impl Limit {
    pub fn get(self) -> u64 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit(DEFAULT_LIMIT)
    }
}

impl TryFrom<u64> for Limit {
    type Error = String;

    fn try_from(n: u64) -> Result<Self, Self::Error> {
        if (1..=MAX_LIMIT).contains(&n) {
            Ok(Limit(n))
        } else {
            Err(format!(
                "limit must be a whole number from 1 to {MAX_LIMIT}, got {n}"
            ))
        }
    }
}

impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>()
            .map_err(|_| format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {s:?}"))
            .and_then(Limit::try_from)
    }
}

/// Where the next page starts: the sort key of the last row shown. Clients see it
/// only as an opaque string (base64url of `<unix micros>:<uuid>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: NaiveDateTime,
    pub id: Uuid,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = format!("{}:{}", self.at.and_utc().timestamp_micros(), self.id);
        f.write_str(&URL_SAFE_NO_PAD.encode(key))
    }
}

impl FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("cursor {s:?} is not one this API returned (use nextCursor as is)");
        let key = URL_SAFE_NO_PAD.decode(s).map_err(|_| invalid())?;
        let key = String::from_utf8(key).map_err(|_| invalid())?;
        let (micros, id) = key.split_once(':').ok_or_else(invalid)?;
        let at = micros
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_micros)
            .ok_or_else(invalid)?
            .naive_utc();
        let id = id.parse::<Uuid>().map_err(|_| invalid())?;
        Ok(Cursor { at, id })
    }
}

impl Cursor {
    /// `(at, id) < (cursor.at, cursor.id)`: the rows after the cursor in newest-first
    /// order. A row-value comparison, so a `(…, at DESC, id DESC)` index bounds the scan.
    pub(crate) fn rows_after(self, at: impl IntoColumnRef, id: impl IntoColumnRef) -> SimpleExpr {
        Expr::tuple([Expr::col(at), Expr::col(id)])
            .lt(Expr::tuple([Expr::val(self.at), Expr::val(self.id)]))
    }

    /// `(at, id) > (cursor.at, cursor.id)`: the rows before the cursor in newest-first
    /// order, for paging back; the same index serves it scanned the other way.
    pub(crate) fn rows_before(self, at: impl IntoColumnRef, id: impl IntoColumnRef) -> SimpleExpr {
        Expr::tuple([Expr::col(at), Expr::col(id)])
            .gt(Expr::tuple([Expr::val(self.at), Expr::val(self.id)]))
    }
}

/// One page of a list, newest first. `nextCursor` is null on the last page.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null when there is none.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` rows fetched in list order: the extra row only
    /// tells that another page exists.
    pub(crate) fn from_rows(mut rows: Vec<T>, limit: Limit, key: impl Fn(&T) -> Cursor) -> Self {
        let more = rows.len() as u64 > limit.get();
        rows.truncate(limit.get() as usize);
        let next_cursor = if more {
            rows.last().map(|row| key(row).to_string())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_itself() {
        let cursor = Cursor {
            at: DateTime::from_timestamp_micros(1_764_000_000_123_456)
                .unwrap()
                .naive_utc(),
            id: Uuid::now_v7(),
        };
        assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
    }

    #[test]
    fn a_cursor_that_was_not_issued_is_refused() {
        for bad in [
            "",
            "!!",
            "bm90LWEtY3Vyc29y",
            &URL_SAFE_NO_PAD.encode("12:not-a-uuid"),
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_outside_one_to_five_hundred_are_refused() {
        for bad in ["0", "-1", "501", "ten", ""] {
            assert!(bad.parse::<Limit>().is_err(), "{bad}");
        }
        assert_eq!("500".parse::<Limit>().unwrap().get(), 500);
        assert_eq!(Limit::default().get(), DEFAULT_LIMIT);
    }
}
