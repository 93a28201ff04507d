//! Chains of ready rows: each points at the one of its app and environment before it.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use uuid::Uuid;

use super::{HEAD_WINDOW, Snapshot};
use crate::deployments::state::Status;
use crate::store::deployments::Environment;

impl Snapshot {
    /// Sets "previousDeploymentId" where this run changed a chain of ready rows, wherever
    /// that needs nothing more from the database: each ready row points at the ready
    /// row of its app and environment just before it in ("createdAt", id) order.
    ///
    /// In a pair whose newest ready rows were read ([`RowKeys::heads`], up to
    /// [`HEAD_WINDOW`] of them), rows made ready after the oldest of those are put in
    /// their place in memory, and the links of the rows after them follow. The usual
    /// case: a deployment finishes after the ones before it, or shortly before one
    /// that started earlier.
    ///
    /// Returns the pairs whose chain changed otherwise (a row made ready before that
    /// window, a ready row whose "createdAt" moved, a pair whose newest rows were not
    /// read), each with the earliest "createdAt" changed: from there on the database
    /// works the links out again (ingest's `link_previous`). Either way the links are
    /// what the table's ready rows imply, whatever order they arrived in.
    pub fn link_previous(&mut self) -> Vec<(Uuid, Environment, NaiveDateTime)> {
        #[derive(Default)]
        struct Pair {
            joined: Vec<usize>,
            relink_since: Option<NaiveDateTime>,
        }
        let mut pairs: BTreeMap<(Uuid, Environment), Pair> = BTreeMap::new();
        for (i, row) in self.rows.iter().enumerate() {
            if !self.touched[i] {
                continue;
            }
            let now_ready = (row.status == Status::Ready).then_some((
                row.app_id,
                row.environment,
                row.created_at,
            ));
            match (self.was_ready[i], now_ready) {
                (before, now) if before == now => {}
                (None, Some((app, env, _))) => pairs.entry((app, env)).or_default().joined.push(i),
                (before, now) => {
                    for (app, env, at) in before.into_iter().chain(now) {
                        let since = &mut pairs.entry((app, env)).or_default().relink_since;
                        *since = Some(since.map_or(at, |since| since.min(at)));
                    }
                }
            }
        }
        let mut relinks = Vec::new();
        for (
            pair,
            Pair {
                joined,
                relink_since,
            },
        ) in pairs
        {
            let key = |i: usize| (self.rows[i].created_at, self.rows[i].id);
            let earliest = joined.iter().map(|&i| self.rows[i].created_at).min();
            // The pair's ready rows as read, newest first: the window the heads
            // lookup read, and any older ones other lookups did.
            let mut held: Vec<usize> = (0..self.rows.len())
                .filter(|&i| matches!(self.was_ready[i], Some((app, env, _)) if (app, env) == pair))
                .collect();
            held.sort_by_key(|&i| std::cmp::Reverse(key(i)));
            held.truncate(HEAD_WINDOW);
            // Every ready row of the pair, when fewer than a window's worth were read.
            let whole = held.len() < HEAD_WINDOW;
            let oldest = held.last().copied().filter(|_| !whole);
            let fits = joined
                .iter()
                .all(|&i| oldest.is_none_or(|o| key(o) < key(i)));
            if relink_since.is_some() || !self.heads.contains(&pair) || !fits {
                let since = relink_since.into_iter().chain(earliest).min();
                relinks.extend(since.map(|since| (pair.0, pair.1, since)));
                continue;
            }
            let mut chain: Vec<usize> = held.into_iter().chain(joined).collect();
            chain.sort_by_key(|&i| key(i));
            // The oldest of a window keeps its link: nothing joined before it.
            let mut previous = if whole {
                None
            } else {
                chain.first().map(|&i| self.rows[i].id)
            };
            for &i in chain.iter().skip(usize::from(!whole)) {
                if self.rows[i].previous_deployment_id != previous {
                    self.rows[i].previous_deployment_id = previous;
                    self.touched[i] = true;
                }
                previous = Some(self.rows[i].id);
            }
        }
        relinks
    }
}
