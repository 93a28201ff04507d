//! What a batch writes: its changed deployment rows and its ledger rows, on Postgres
//! in one statement of one text (rows as one array per column), on SQLite as JSON
//! rows through `jsonb_each`.

use std::sync::LazyLock;

use chrono::NaiveDateTime;
use sea_orm::sea_query::{ArrayType, OnConflict, OptionEnum};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ColumnType, ConnectionTrait, DatabaseTransaction, DbBackend,
    DbErr, EntityTrait, IdenStatic, Iterable, ModelTrait, TryInsertResult,
};
use uuid::Uuid;

use super::read::{link_previous, named_apps};
use super::{hex_id, json, postgres_statement, sqlite_statement};
use crate::deployments::plan::Snapshot;
use crate::store::deployments::Environment;
use crate::store::{deliveries, deployments};

/// Writes the rows a snapshot created or changed and the batch's ledger rows; false
/// when a ledger row was already there (recorded by another transaction since the
/// batch looked, or before when it did not look).
pub(super) async fn write(
    txn: &DatabaseTransaction,
    snapshot: &Snapshot,
    mut ledger: Vec<deliveries::Model>,
    relinks: &[(Uuid, Environment, NaiveDateTime)],
) -> Result<bool, DbErr> {
    if txn.get_database_backend() != DbBackend::Postgres {
        sort_ledger(&mut ledger);
        write_rows(txn, snapshot).await?;
        link_previous(txn, relinks).await?;
        return insert_ledger(txn, ledger).await;
    }
    let expected = ledger.len() as u64;
    let inserted = txn
        .execute_raw(postgres_statement(
            &WRITE_LOCKED,
            write_values(snapshot.touched(), ledger),
        ))
        .await?
        .rows_affected();
    if inserted != expected {
        return Ok(false);
    }
    link_previous(txn, relinks).await?;
    Ok(true)
}

/// Ledger rows always in one order, so two transactions waiting on each other's
/// ledger keys cannot deadlock.
fn sort_ledger(ledger: &mut [deliveries::Model]) {
    ledger.sort_by(|a, b| (&a.provider, &a.delivery_id).cmp(&(&b.provider, &b.delivery_id)));
}

/// On Postgres, a batch's rows and ledger rows go in one statement of one text
/// whatever the batch's size: each table's rows as one array per column (see
/// [`row_arrays`]), which `unnest` turns back into rows. The deployment rows' arrays
/// come first, then the ledger's: [`WRITE_PARAMETERS`] in all.
fn write_statement(guard: &str, on_ledger_conflict: &str) -> String {
    let set = rewritten_set();
    let rows = Unnested::<deployments::Entity>::new("d", 1);
    let first_ledger = 1 + row_arrays_count::<deployments::Entity>();
    let ledger = Unnested::<deliveries::Entity>::new("r", first_ledger);
    format!(
        r#"WITH changed AS (
    INSERT INTO deployments ({row_columns})
    SELECT {row_values} FROM {row_source} {guard}
    ON CONFLICT (id) DO UPDATE SET {set}
)
INSERT INTO webhook_deliveries ({ledger_columns})
SELECT {ledger_values} FROM {ledger_source}
{guard}
ORDER BY r.provider, r."deliveryId"
{on_ledger_conflict}"#,
        row_columns = rows.columns,
        row_values = rows.values,
        row_source = rows.source,
        ledger_columns = ledger.columns,
        ledger_values = ledger.values,
        ledger_source = ledger.source,
    )
}

/// How many parameters [`write_values`] makes: [`row_arrays`] of both tables.
static WRITE_PARAMETERS: LazyLock<usize> = LazyLock::new(|| {
    row_arrays_count::<deployments::Entity>() + row_arrays_count::<deliveries::Entity>()
});

/// The write of a locked batch: a ledger row already there is left alone, and the
/// caller, finding fewer rows inserted than it had, rolls back.
static WRITE_LOCKED: LazyLock<String> =
    LazyLock::new(|| write_statement("", r#"ON CONFLICT (provider, "deliveryId") DO NOTHING"#));

/// The write of an unlocked batch ([`attempt_unlocked`]), a statement that commits
/// on its own. After [`write_values`]' parameters come four: the apps the batch was
/// planned with and each one's version then, and the repositories and Vercel
/// projects its keys name. It locks the apps those keys name (in id order, as every
/// writer does) and writes only if they are exactly the apps the batch was planned
/// with, each still at the version it had then, raising them; otherwise it inserts
/// nothing. A ledger row already there fails the statement (a unique violation), so
/// that nothing of the batch is written.
pub static WRITE_UNLOCKED: LazyLock<String> = LazyLock::new(|| {
    let write = write_statement("WHERE (SELECT held FROM versions)", "");
    let write = write.strip_prefix("WITH ").expect("a WITH statement");
    let n = *WRITE_PARAMETERS;
    let (apps, versions) = (format!("${}", n + 1), format!("${}", n + 2));
    let named = named_apps(&format!("${}", n + 3), &format!("${}", n + 4));
    format!(
        r#"WITH locked AS (
    SELECT id, "ingestVersion" FROM apps WHERE id IN ({named}) ORDER BY id FOR UPDATE
), versions AS (
    SELECT count(*) = cardinality({apps}::uuid[])
       AND (SELECT count(*) FROM locked) = cardinality({apps}::uuid[]) AS held
    FROM locked JOIN unnest({apps}::uuid[], {versions}::int8[]) AS v (id, "ingestVersion")
      USING (id, "ingestVersion")
), raised AS (
    UPDATE apps SET "ingestVersion" = apps."ingestVersion" + 1 FROM locked
    WHERE apps.id = locked.id AND (SELECT held FROM versions)
), {write}"#
    )
});

/// The parameters of [`WRITE_LOCKED`], and the first [`WRITE_PARAMETERS`] of
/// [`WRITE_UNLOCKED`]: the deployment rows, then the ledger rows.
pub fn write_values<'a>(
    rows: impl IntoIterator<Item = &'a deployments::Model>,
    mut ledger: Vec<deliveries::Model>,
) -> Vec<sea_orm::Value> {
    sort_ledger(&mut ledger);
    let rows: Vec<&deployments::Model> = rows.into_iter().collect();
    // The bodies are moved into their array, not copied.
    let mut bodies = Some(
        ledger
            .iter_mut()
            .map(|row| std::mem::take(&mut row.body))
            .collect::<Vec<Vec<u8>>>(),
    );
    let mut values = row_arrays::<deployments::Model>(&rows, |_| None);
    values.extend(row_arrays::<deliveries::Model>(&ledger, |column| {
        matches!(column, deliveries::Column::Body).then(|| bodies.take().unwrap_or_default().into())
    }));
    values
}

/// A table's rows as parameters that Postgres reads without parsing text: one
/// array per column, in the table's column order, then one mask per row whose bit
/// `i` says that the row's column `i` is NULL (the binder has no NULL elements, so a
/// NULL goes into its column's array as a zero value). `given` may supply a column's
/// array itself. As JSON documents expanded by `json_populate_recordset` instead,
/// the rows cost Postgres about a tenth of its time a delivery, parsing each twice
/// (the cast to `json` checks the text, the function reads it again).
fn row_arrays<M: ModelTrait>(
    rows: &[impl std::borrow::Borrow<M>],
    mut given: impl FnMut(<M::Entity as EntityTrait>::Column) -> Option<sea_orm::Value>,
) -> Vec<sea_orm::Value> {
    let mut masks = vec![0i32; rows.len()];
    let mut arrays: Vec<sea_orm::Value> = <M::Entity as EntityTrait>::Column::iter()
        .enumerate()
        .map(|(bit, column)| {
            if let Some(array) = given(column) {
                return array;
            }
            let items = rows
                .iter()
                .zip(masks.iter_mut())
                .map(|(row, mask)| {
                    let value = row.borrow().get(column);
                    if value == value.as_null() {
                        *mask |= 1 << bit;
                        value.dummy_value()
                    } else {
                        value
                    }
                })
                .collect();
            let ty = array_type(column.def().get_column_type());
            sea_orm::Value::Array(ty, Some(Box::new(items)))
        })
        .collect();
    arrays.push(masks.into());
    arrays
}

/// How many parameters [`row_arrays`] makes for a table: its columns and the masks.
fn row_arrays_count<E: EntityTrait>() -> usize {
    E::Column::iter().count() + 1
}

/// The element type of a column's array in [`row_arrays`], from the column's type,
/// so that an empty batch binds the same types as any other (the statement is
/// prepared once, with the types of its first use).
fn array_type(column: &ColumnType) -> ArrayType {
    match column {
        ColumnType::Uuid => ArrayType::Uuid,
        ColumnType::String(_) | ColumnType::Text | ColumnType::Enum { .. } => ArrayType::String,
        ColumnType::DateTime | ColumnType::Timestamp => ArrayType::ChronoDateTime,
        ColumnType::BigInteger => ArrayType::BigInt,
        ColumnType::Integer => ArrayType::Int,
        ColumnType::Boolean => ArrayType::Bool,
        ColumnType::Binary(_) | ColumnType::VarBinary(_) | ColumnType::Blob => ArrayType::Bytes,
        other => unreachable!("no array type for a column of type {other:?}"),
    }
}

/// The name Postgres gives an [`array_type`]'s elements.
fn postgres_type(ty: &ArrayType) -> &'static str {
    match ty {
        ArrayType::Uuid => "uuid",
        ArrayType::String => "text",
        ArrayType::ChronoDateTime => "timestamp",
        ArrayType::BigInt => "int8",
        ArrayType::Int => "int4",
        ArrayType::Bool => "bool",
        ArrayType::Bytes => "bytea",
        other => unreachable!("no Postgres type for {other:?}"),
    }
}

/// The SQL that reads a table's [`row_arrays`] back, bound from parameter `first`
/// on: their `unnest` as `alias`, the values of the table's columns from it (NULL
/// where the mask says so), and the names of those columns.
struct Unnested<E> {
    source: String,
    values: String,
    columns: String,
    _table: std::marker::PhantomData<E>,
}

impl<E: EntityTrait> Unnested<E> {
    fn new(alias: &str, first: usize) -> Self {
        let columns: Vec<E::Column> = E::Column::iter().collect();
        // A bit of an `int4` mask per column.
        assert!(columns.len() <= 31, "a NULL mask has bits for 31 columns");
        let arrays = columns
            .iter()
            .enumerate()
            .map(|(i, column)| {
                let ty = postgres_type(&array_type(column.def().get_column_type()));
                format!("${}::{ty}[]", first + i)
            })
            .chain([format!("${}::int4[]", first + columns.len())])
            .collect::<Vec<_>>()
            .join(", ");
        let names: Vec<String> = columns
            .iter()
            .map(|column| format!(r#""{}""#, column.as_str()))
            .collect();
        let values = columns
            .iter()
            .zip(&names)
            .enumerate()
            .map(|(bit, (column, name))| {
                if column.def().is_null() {
                    let bit = 1i32 << bit;
                    format!("CASE WHEN {alias}.null_mask & {bit} = 0 THEN {alias}.{name} END")
                } else {
                    format!("{alias}.{name}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        Self {
            source: format!(
                "unnest({arrays}) AS {alias} ({}, null_mask)",
                names.join(", ")
            ),
            values,
            columns: names.join(", "),
            _table: std::marker::PhantomData,
        }
    }
}

/// What an upsert of a deployment row rewrites when the row is there already: every
/// column but its key and what a row never changes (its app and environment).
fn rewritten_columns() -> impl Iterator<Item = deployments::Column> {
    use deployments::Column;
    Column::iter().filter(|c| !matches!(c, Column::Id | Column::AppId | Column::Environment))
}

/// [`rewritten_columns`] as the `SET` list of an `ON CONFLICT (id) DO UPDATE`, on
/// either database.
fn rewritten_set() -> String {
    rewritten_columns()
        .map(|c| format!(r#""{0}" = excluded."{0}""#, c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes the rows a snapshot created or changed, in one statement.
pub(super) async fn write_rows(
    txn: &DatabaseTransaction,
    snapshot: &Snapshot,
) -> Result<(), DbErr> {
    let rows: Vec<deployments::Model> = snapshot.touched().cloned().collect();
    if rows.is_empty() {
        return Ok(());
    }
    use deployments::Column;
    if txn.get_database_backend() == DbBackend::Sqlite {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            sqlite_insert::<deployments::Entity>(&format!(
                "ON CONFLICT (id) DO UPDATE SET {}",
                rewritten_set()
            ))
        });
        let (rows, _) = sqlite_rows(rows.into_iter().map(deployments::ActiveModel::from))?;
        txn.execute_raw(sqlite_statement(&SQL, [rows])).await?;
        return Ok(());
    }
    deployments::Entity::insert_many(rows.into_iter().map(deployments::ActiveModel::from))
        .on_conflict(
            OnConflict::column(Column::Id)
                .update_columns(rewritten_columns())
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Inserts the batch's ledger rows in one statement; false when one of them was
/// already there (recorded by a concurrent transaction since the batch looked).
async fn insert_ledger(
    txn: &DatabaseTransaction,
    rows: Vec<deliveries::Model>,
) -> Result<bool, DbErr> {
    if rows.is_empty() {
        return Ok(true);
    }
    let expected = rows.len() as u64;
    if txn.get_database_backend() == DbBackend::Sqlite {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            sqlite_insert::<deliveries::Entity>(
                r#"ON CONFLICT (provider, "deliveryId") DO NOTHING"#,
            )
        });
        let (rows, bodies) = sqlite_rows(rows.into_iter().map(deliveries::ActiveModel::from))?;
        let inserted = txn
            .execute_raw(sqlite_statement(&SQL, [rows, bodies.into()]))
            .await?
            .rows_affected();
        return Ok(inserted == expected);
    }
    let inserted =
        deliveries::Entity::insert_many(rows.into_iter().map(deliveries::ActiveModel::from))
            .on_conflict_do_nothing_on([
                deliveries::Column::Provider,
                deliveries::Column::DeliveryId,
            ])
            .exec_without_returning(txn)
            .await?;
    Ok(matches!(inserted, TryInsertResult::Inserted(n) if n == expected))
}

/// On SQLite, an `INSERT` of rows of `E` given as one JSON array (`?1`): one text for
/// any number of rows, as [`LOOKUP_SQLITE`] is for any batch, where `insert_many`
/// wrote a text per number of rows. `conflict` is its `ON CONFLICT` clause. Each row
/// is an array of its columns' values in the entity's order, as [`sqlite_rows`] writes
/// them: uuids as hex, which `unhex` turns back into the 16-byte blobs sqlx stores, and
/// bytes (which JSON has not) as [start, length] in `?2`, every row's bytes one after
/// another. (`WHERE true` keeps SQLite from reading `ON CONFLICT` as a join's `ON`.)
fn sqlite_insert<E: EntityTrait>(conflict: &str) -> String {
    let (mut names, mut values) = (Vec::new(), Vec::new());
    for (i, column) in E::Column::iter().enumerate() {
        names.push(format!(r#""{}""#, column.as_str()));
        values.push(match column.def().get_column_type() {
            ColumnType::Uuid => format!("unhex(r.value ->> {i})"),
            ColumnType::Blob | ColumnType::Binary(_) | ColumnType::VarBinary(_) => {
                format!("substr(?2, r.value ->> '$[{i}][0]', r.value ->> '$[{i}][1]')")
            }
            _ => format!("r.value ->> {i}"),
        });
    }
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM jsonb_each(?1) AS r WHERE true {conflict}",
        E::default().table_name(),
        names.join(", "),
        values.join(", ")
    )
}

/// Rows for a [`sqlite_insert`] statement: the JSON array of rows, and their bytes. Each
/// value is written as sqlx would bind it on SQLite, so that the table holds the same
/// values either way (times as "%F %T%.f" text, which their order and comparisons rest
/// on, here through chrono's `Display`, which writes the same without parsing a format
/// for each value; booleans as 0 or 1).
fn sqlite_rows<A: ActiveModelTrait>(
    rows: impl IntoIterator<Item = A>,
) -> Result<(sea_orm::Value, Vec<u8>), DbErr> {
    use sea_orm::Value as V;
    use serde_json::Value as J;
    // Never empty: SQLite hands `substr` a blob of no bytes as no blob, and the empty
    // bodies of a batch of only empty bodies would be NULL.
    let mut bytes = vec![0];
    let mut encoded = Vec::new();
    for mut row in rows {
        let mut values = Vec::new();
        for column in <A::Entity as EntityTrait>::Column::iter() {
            values.push(match row.take(column).into_value() {
                Some(V::Bytes(Some(b))) => {
                    let start = bytes.len() + 1;
                    bytes.extend_from_slice(&b);
                    serde_json::json!([start, b.len()])
                }
                Some(V::Uuid(u)) => u.map(hex_id).into(),
                Some(V::ChronoDateTime(t)) => t.map(|t| t.to_string()).into(),
                Some(V::String(s)) => s.into(),
                Some(V::Enum(e)) => match e {
                    OptionEnum::Some(e) => J::from(e.value.into_owned()),
                    OptionEnum::None(_) => J::Null,
                },
                Some(V::Bool(b)) => b.map(i64::from).into(),
                Some(V::Int(i)) => i.into(),
                Some(V::BigInt(i)) => i.into(),
                other => {
                    return Err(DbErr::Custom(format!(
                        "no JSON for SQLite of column {}: {other:?}",
                        column.as_str()
                    )));
                }
            });
        }
        encoded.push(J::Array(values));
    }
    Ok((json(&encoded)?, bytes))
}

/// A reason as the ledger's `reason` column can hold it, on either database.
pub(super) fn ledger_reason(reason: &str) -> String {
    crate::webhooks::truncate(crate::webhooks::storable(reason), 255)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, NaiveDateTime};

    /// [`super::sqlite_rows`] writes times with `Display`; sqlx binds them with
    /// "%F %T%.f". The two must be the same text, or rows written either way would
    /// compare and sort apart.
    #[test]
    fn a_time_reads_as_sqlx_would_bind_it() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut times: Vec<NaiveDateTime> = [0, 1, 999_999_999, 1_000_000, 120_000_000]
            .iter()
            .map(|&nanos| {
                DateTime::from_timestamp(1_780_000_000, nanos)
                    .unwrap()
                    .naive_utc()
            })
            .collect();
        for _ in 0..10_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = (seed % 8_000_000_000) as i64 - 2_000_000_000;
            let nanos = match seed % 4 {
                0 => 0,
                1 => (seed >> 8) as u32 % 1_000 * 1_000_000,
                2 => (seed >> 8) as u32 % 1_000_000 * 1_000,
                _ => (seed >> 8) as u32 % 1_000_000_000,
            };
            times.push(DateTime::from_timestamp(secs, nanos).unwrap().naive_utc());
        }
        for t in times {
            assert_eq!(t.to_string(), t.format("%F %T%.f").to_string());
        }
    }
}
