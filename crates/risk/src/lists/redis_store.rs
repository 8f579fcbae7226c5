//! Lists in Redis: one hash per list (`field` = pattern, `value` = JSON of the rest) and a
//! version counter bumped in the same MULTI as every write. All four keys carry the hash tag
//! `{lists}`, so they share one Cluster slot and the MULTI is legal there.

use std::collections::HashMap;
use std::time::Duration;

use crate::redis_conn::RedisConn;
use serde::{Deserialize, Serialize};

use super::{ListEntry, ListKind, ListStore, Pattern};
use crate::error::RiskError;
use crate::BoxFuture;

const STORE: &str = "redis lists";

#[derive(Serialize, Deserialize)]
struct Stored {
    reason: String,
    who: String,
    added_at: u64,
    #[serde(default)]
    expires_at: Option<u64>,
}

/// Lists shared by every node through Redis.
#[derive(Clone)]
pub struct RedisListStore {
    conn: RedisConn,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisListStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisListStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisListStore {
    /// `timeout` bounds every operation (list reads can be large: not the per-call deadline).
    pub fn new(conn: RedisConn, prefix: &str, timeout: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            timeout,
        }
    }

    /// The hash holding one list.
    pub fn list_key(&self, list: ListKind) -> String {
        format!("{}:{{lists}}:{}", self.prefix, list.as_str())
    }

    pub fn version_key(&self) -> String {
        format!("{}:{{lists}}:version", self.prefix)
    }

    async fn run<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, RiskError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RiskError::from_redis(STORE, &e)),
            Err(_) => Err(RiskError::Timeout {
                store: STORE,
                after: self.timeout,
            }),
        }
    }

    fn stored(e: &ListEntry) -> Result<String, RiskError> {
        serde_json::to_string(&Stored {
            reason: e.reason.clone(),
            who: e.who.clone(),
            added_at: e.added_at,
            expires_at: e.expires_at,
        })
        .map_err(|err| RiskError::InvalidEntry(err.to_string()))
    }
}

impl ListStore for RedisListStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn version(&self) -> BoxFuture<'_, Result<u64, RiskError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.get(self.version_key());
            let (v,): (Option<u64>,) = self.run(&pipe).await?;
            Ok(v.unwrap_or(0))
        })
    }

    fn load(&self) -> BoxFuture<'_, Result<(u64, Vec<ListEntry>), RiskError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic().get(self.version_key());
            for list in ListKind::ALL {
                pipe.hgetall(self.list_key(list));
            }
            type Hash = HashMap<String, String>;
            let (v, block, gray, allow): (Option<u64>, Hash, Hash, Hash) = self.run(&pipe).await?;
            let mut entries = Vec::with_capacity(block.len() + gray.len() + allow.len());
            for (list, hash) in [
                (ListKind::Block, block),
                (ListKind::Gray, gray),
                (ListKind::Allow, allow),
            ] {
                for (field, value) in hash {
                    match decode(list, &field, &value) {
                        Ok(e) => entries.push(e),
                        // One bad entry (written by hand?) must not take every list down.
                        Err(err) => {
                            metrics::counter!("tollgate_risk_list_bad_entries_total").increment(1);
                            tracing::warn!(list = list.as_str(), field = %field, error = %err, "skipping unreadable list entry in Redis");
                        }
                    }
                }
            }
            Ok((v.unwrap_or(0), entries))
        })
    }

    fn add(&self, entry: ListEntry) -> BoxFuture<'_, Result<(), RiskError>> {
        Box::pin(async move {
            entry.check()?;
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hset(
                    self.list_key(entry.list),
                    entry.pattern.to_string(),
                    Self::stored(&entry)?,
                )
                .ignore()
                .incr(self.version_key(), 1)
                .ignore();
            self.run::<()>(&pipe).await
        })
    }

    fn remove<'a>(
        &'a self,
        list: ListKind,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<bool, RiskError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic()
                .hdel(self.list_key(list), pattern.to_string())
                .incr(self.version_key(), 1)
                .ignore();
            let (removed,): (u64,) = self.run(&pipe).await?;
            Ok(removed > 0)
        })
    }

    fn import(&self, entries: Vec<ListEntry>) -> BoxFuture<'_, Result<usize, RiskError>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for e in &entries {
                e.check()?;
                pipe.hset(
                    self.list_key(e.list),
                    e.pattern.to_string(),
                    Self::stored(e)?,
                )
                .ignore();
            }
            pipe.incr(self.version_key(), 1).ignore();
            self.run::<()>(&pipe).await?;
            Ok(entries.len())
        })
    }
}

fn decode(list: ListKind, field: &str, value: &str) -> Result<ListEntry, RiskError> {
    let s: Stored =
        serde_json::from_str(value).map_err(|e| RiskError::InvalidEntry(e.to_string()))?;
    let e = ListEntry {
        list,
        pattern: field.parse()?,
        reason: s.reason,
        who: s.who,
        added_at: s.added_at,
        expires_at: s.expires_at,
    };
    e.check()?;
    Ok(e)
}
