//! Queue statistics: counts by state and the age of the oldest pending event.

use rusqlite::Connection;

use super::schema::sql;
use super::writer::Writer;
use crate::queue::{QueueError, QueueStats};

impl Writer {
    pub(super) fn stats(&mut self) -> Result<QueueStats, QueueError> {
        let now = self.now();
        let tx = self.conn.transaction().map_err(sql("stats"))?;
        let stats = read_stats(&tx, now)?;
        tx.commit().map_err(sql("stats"))?;
        Ok(stats)
    }
}

/// Counts of events by state at `now`. Every query is answered from an index
/// (see [`SCHEMA_V2`](super::schema::SCHEMA_V2)), so this stays cheap however many events are kept.
pub(in crate::queue) fn read_stats(conn: &Connection, now: i64) -> Result<QueueStats, QueueError> {
    let op = "stats";
    let count = |sql_text: &str, args: &[&dyn rusqlite::ToSql]| -> Result<u64, QueueError> {
        let n: i64 = conn
            .prepare_cached(sql_text)
            .and_then(|mut stmt| stmt.query_row(args, |row| row.get(0)))
            .map_err(sql(op))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let pending = count("SELECT COUNT(*) FROM events WHERE state = 'pending'", &[])?;
    let in_flight = count(
        "SELECT COUNT(*) FROM events INDEXED BY events_state_lease
         WHERE state = 'pending' AND locked_until > ?1",
        &[&now],
    )?;
    let dead = count("SELECT COUNT(*) FROM events WHERE state = 'dead'", &[])?;
    let done = count("SELECT COUNT(*) FROM events WHERE state = 'done'", &[])?;
    let oldest: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(received_at) FROM events INDEXED BY events_state_lease
             WHERE state = 'pending'",
        )
        .and_then(|mut stmt| stmt.query_row([], |row| row.get(0)))
        .map_err(sql(op))?;
    Ok(QueueStats {
        pending: pending.saturating_sub(in_flight),
        in_flight,
        dead,
        done,
        oldest_pending_age_ms: oldest.map(|received_at| now.saturating_sub(received_at)),
    })
}
