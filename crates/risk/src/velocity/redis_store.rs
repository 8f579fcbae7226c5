//! Velocity in Redis: one Lua script per call, so one round trip counts every window of every
//! dimension atomically.
//!
//! Keys, one sorted set per dimension (scores are arrival times in ms):
//! - `tg:{T}:a:<ani>`             per ANI; members are Call-IDs
//! - `tg:{T}:ad:<ani>:<dnis>`     per ANI + dialed number; members are Call-IDs
//! - `tg:{T}:n`                   per NPA-NXX; members are the callers (ANI digits), each
//!   scored by its latest call, so a window's count is its distinct callers
//! - `tg:{T}:h:<ani>`             the caller's last routed call (a string)
//!
//! An ANI the engine does not believe counts in its own namespace, a key part right after the
//! tag: `tg:{T}:u:a:<ani>`, `tg:{T}:u:n`, `tg:{T}:u:h:<ani>` for untrusted sources, `nv:`
//! instead of `u:` for a trusted trunk's unverified ANI (From, `screen=no`). A verified
//! number's keys are the ones without a part, as before.
//!
//! Distinct callers per exchange are a sorted set rather than a HyperLogLog: the set gives
//! exact counts for sliding windows of any length from one key (`ZCOUNT` by last-seen time),
//! it is bounded by the same cap as every other set (one more than the largest threshold, so
//! at most 10,001 members by default: about 0.6 MB for an exchange that busy, nothing for
//! the usual few callers), and it lives under the call's own hash tag, so the one script per
//! call still touches a single Cluster slot. A HyperLogLog would need one key per time bucket
//! and window (merged with `PFCOUNT` over many keys), counts only whole buckets, and is
//! approximate (±0.81 %).
//!
//! The hash tag `T` is the ANI's NANP area code and exchange (`1212555`) when it has one, else
//! the ANI itself, so all of one call's keys hash to one Cluster slot and one script can touch
//! them all: no second round trip, no cross-slot pipeline. An exchange's ANIs share the
//! exchange counter's slot, which is no extra load for that slot since every one of their calls
//! already increments the exchange counter.
//!
//! Per key, the script runs `ZADD NX now callid` (a Call-ID seen before keeps its first time
//! and counts once; on the exchange's set `ZADD now ani`, only for a new Call-ID),
//! `ZREMRANGEBYSCORE` past the longest window, trims to the cap, `ZCOUNT`s
//! each shorter window (the longest window's count is the set's size by then) and sets
//! `PEXPIRE` to the longest window. A dimension no policy sets a threshold for has no key, and
//! with the repeat-caller memory off there is no history read: a configuration that counts
//! calls per ANI over one minute costs four commands per call. `redis::Script` sends `EVALSHA`; after
//! a Redis restart (empty script cache) it gets `NOSCRIPT`, loads the script and repeats the
//! call, all inside the same deadline.
//!
//! The dry run ([`VelocityStore::peek`]) sends a second script over the same keys that only
//! reads (`ZSCORE`, `ZCOUNT`, `GET`): each count is what the recording script would return,
//! this call included (+1 unless its Call-ID is already counted; on the exchange's set +1
//! unless the caller already counts in that window), capped the same way.

use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::redis_conn::RedisConn;
use redis::Script;

use super::{Caller, Caps, Observation, Trust, VelocityCounts, VelocityStore};
use crate::error::RiskError;
use crate::redis_conn::HoldOff;
use crate::BoxFuture;

const STORE: &str = "redis";

/// KEYS: the call's sorted sets, then (when the repeat-caller memory is on) the ANI's history
/// string. ARGV: now_ms, member, trim_at, ttl_ms, n_windows, n_sorted_sets, one exclusive
/// lower bound per window (`(cutoff`, or `all` for the longest window, whose lower bound is
/// `trim_at`), then one cap per sorted set, then the caller (ANI digits) when the last sorted
/// set is the exchange's, else `""`. Returns the counts, then the history value (`""` when
/// none) if its key was given.
const SCRIPT: &str = r"
local now, member, trim, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local nwin = tonumber(ARGV[5])
local nsets = tonumber(ARGV[6])
local caller = ARGV[7 + nwin + nsets]
local out = {}
local new = 1
for i = 1, nsets do
  local key = KEYS[i]
  if i == nsets and caller ~= '' then
    if new == 1 then
      redis.call('ZADD', key, now, caller)
    end
  else
    local added = redis.call('ZADD', key, 'NX', now, member)
    if i == 1 then
      new = added
    end
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', trim)
  local cap = tonumber(ARGV[6 + nwin + i])
  local n = redis.call('ZCARD', key)
  if n > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, n - cap - 1)
    n = cap
  end
  for w = 1, nwin do
    local from = ARGV[6 + w]
    if from == 'all' then
      out[#out + 1] = n
    else
      out[#out + 1] = redis.call('ZCOUNT', key, from, '+inf')
    end
  end
  redis.call('PEXPIRE', key, ttl)
end
if #KEYS > nsets then
  out[#out + 1] = redis.call('GET', KEYS[nsets + 1]) or ''
end
return out
";

/// The dry run: the same KEYS and ARGV as [`SCRIPT`], the same counts back, and nothing
/// written (only ZSCORE, ZCOUNT and GET).
const PEEK_SCRIPT: &str = r"
local member, trim = ARGV[2], ARGV[3]
local nwin = tonumber(ARGV[5])
local nsets = tonumber(ARGV[6])
local caller = ARGV[7 + nwin + nsets]
local out = {}
local new = true
for i = 1, nsets do
  local key = KEYS[i]
  local exchange = i == nsets and caller ~= ''
  local seen
  if exchange then
    seen = redis.call('ZSCORE', key, caller)
  else
    seen = redis.call('ZSCORE', key, member)
    if i == 1 and seen then
      new = false
    end
  end
  local cap = tonumber(ARGV[6 + nwin + i])
  for w = 1, nwin do
    local from = ARGV[6 + w]
    if from == 'all' then
      from = '(' .. trim
    end
    local n = redis.call('ZCOUNT', key, from, '+inf')
    local lo = tonumber(string.sub(from, 2))
    local counted = seen and tonumber(seen) > lo
    if new and not counted then
      n = n + 1
    end
    if n > cap then
      n = cap
    end
    out[#out + 1] = n
  end
end
if #KEYS > nsets then
  out[#out + 1] = redis.call('GET', KEYS[nsets + 1]) or ''
end
return out
";

/// The hash tag of an ANI's keys: its NANP exchange when it has one, else itself. The trust
/// namespace is not part of the tag: a call's keys share one slot whatever its trust.
fn tag(ani: &str, npa_nxx: Option<(u16, u16)>) -> String {
    match npa_nxx {
        Some((npa, nxx)) => format!("1{npa:03}{nxx:03}"),
        None => ani.to_owned(),
    }
}

/// The string holding the ANI's last routed call (`"<unix secs> <queue>"`), in the same slot
/// as its counters so the velocity script reads it in the same round trip; per trust namespace.
pub fn history_key(prefix: &str, ani: &str, npa_nxx: Option<(u16, u16)>, trust: Trust) -> String {
    format!(
        "{prefix}:{{{}}}:{}h:{ani}",
        tag(ani, npa_nxx),
        trust.key_part()
    )
}

fn parse_history(v: &str) -> Option<tollgate_core::CallerHistory> {
    let (secs, queue) = v.split_once(' ')?;
    Some(tollgate_core::CallerHistory {
        last_seen: secs.parse().ok()?,
        last_queue: queue.to_owned(),
    })
}

/// The sorted sets one call touches, in the order the script returns their counts.
pub fn keys_for(prefix: &str, obs: &Observation<'_>) -> Vec<String> {
    call_keys(prefix, obs, true, true)
}

/// The ANI's set, then the ANI + DNIS and NPA-NXX sets where the call has those and they
/// are counted.
fn call_keys(prefix: &str, obs: &Observation<'_>, ani_dnis: bool, npa_nxx: bool) -> Vec<String> {
    let ani = obs.ani.digits();
    let tag = tag(ani, obs.npa_nxx);
    let ns = obs.trust.key_part();
    let mut keys = Vec::with_capacity(4);
    keys.push(format!("{prefix}:{{{tag}}}:{ns}a:{ani}"));
    if let (Some(d), true) = (obs.dnis, ani_dnis) {
        keys.push(format!("{prefix}:{{{tag}}}:{ns}ad:{ani}:{d}"));
    }
    if obs.npa_nxx.is_some() && npa_nxx {
        keys.push(format!("{prefix}:{{{tag}}}:{ns}n"));
    }
    keys
}

/// The sorted-set member for a Call-ID: itself, or a stable 128-bit hash when it is long (a
/// Call-ID is caller-chosen; a hash keeps members small and still the same on every node).
pub fn call_member(call_id: &str) -> String {
    if call_id.len() <= 64 {
        return call_id.to_owned();
    }
    let fnv = |seed: u64| {
        call_id.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    format!(
        "h:{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

/// The Redis [`VelocityStore`].
pub struct RedisVelocity {
    conn: RedisConn,
    script: Script,
    peek_script: Script,
    prefix: String,
    windows: Vec<u32>,
    caps: Caps,
    deadline: Duration,
    breaker: HoldOff,
    /// How long a routed call is remembered (0: never).
    history_ttl_s: u64,
}

impl std::fmt::Debug for RedisVelocity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisVelocity")
            .field("prefix", &self.prefix)
            .field("windows", &self.windows)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl RedisVelocity {
    /// `deadline` bounds each call's round trip (retries and script reload included);
    /// `breaker` is how long calls skip Redis after a failure.
    pub fn new(
        conn: RedisConn,
        prefix: &str,
        windows: Vec<u32>,
        caps: Caps,
        deadline: Duration,
        breaker: Duration,
    ) -> Self {
        Self {
            conn,
            script: Script::new(SCRIPT),
            peek_script: Script::new(PEEK_SCRIPT),
            prefix: prefix.to_owned(),
            windows,
            caps,
            deadline,
            breaker: HoldOff::new(breaker),
            history_ttl_s: 86_400,
        }
    }

    /// How long a routed call is remembered for repeat-caller rules (0: not at all).
    pub fn with_history_ttl(mut self, ttl_s: u64) -> Self {
        self.history_ttl_s = ttl_s;
        self
    }

    async fn remember_inner(
        &self,
        caller: &Caller,
        queue: &str,
        now: std::time::SystemTime,
    ) -> Result<(), RiskError> {
        if self.history_ttl_s == 0 || !self.breaker.allows() {
            return Ok(());
        }
        let key = history_key(
            &self.prefix,
            caller.ani.digits(),
            caller.npa_nxx,
            caller.trust,
        );
        let value = format!("{} {queue}", crate::unix_secs(now));
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("EX")
            .arg(self.history_ttl_s)
            .clone();
        match tokio::time::timeout(self.deadline, cmd.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RiskError::from_redis(STORE, &e)),
            Err(_) => Err(RiskError::Timeout {
                store: STORE,
                after: self.deadline,
            }),
        }
    }

    /// The script's SHA1 (what `EVALSHA` sends), for tests and operators.
    pub fn script_sha(&self) -> &str {
        self.script.get_hash()
    }

    /// The dry run's script SHA1.
    pub fn peek_script_sha(&self) -> &str {
        self.peek_script.get_hash()
    }

    /// Runs the recording script (`write`) or the read-only one over the call's keys.
    async fn record_inner(
        &self,
        obs: Observation<'_>,
        write: bool,
    ) -> Result<VelocityCounts, RiskError> {
        if !self.breaker.allows() {
            return Err(RiskError::CircuitOpen { store: STORE });
        }
        let now_ms = obs
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let max_ms = u64::from(self.windows.iter().copied().max().unwrap_or(0)) * 1000;
        let by_dnis = obs.dnis.is_some() && self.caps.ani_dnis > 0;
        let by_exchange = obs.npa_nxx.is_some() && self.caps.npa_nxx > 0;
        let keys = call_keys(&self.prefix, &obs, by_dnis, by_exchange);
        let script = if write {
            &self.script
        } else {
            &self.peek_script
        };
        let mut inv = script.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        let with_history = self.history_ttl_s > 0;
        if with_history {
            inv.key(history_key(
                &self.prefix,
                obs.ani.digits(),
                obs.npa_nxx,
                obs.trust,
            ));
        }
        inv.arg(now_ms)
            .arg(call_member(obs.call_id))
            .arg(now_ms.saturating_sub(max_ms))
            .arg(max_ms + 60_000)
            .arg(self.windows.len())
            .arg(keys.len());
        for &w in &self.windows {
            if u64::from(w) * 1000 == max_ms {
                inv.arg("all");
            } else {
                inv.arg(format!("({}", now_ms.saturating_sub(u64::from(w) * 1000)));
            }
        }
        inv.arg(self.caps.ani.max(1));
        if by_dnis {
            inv.arg(self.caps.ani_dnis);
        }
        if by_exchange {
            inv.arg(self.caps.npa_nxx);
            inv.arg(obs.ani.digits());
        } else {
            inv.arg("");
        }
        let mut conn = self.conn.clone();
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.deadline,
            inv.invoke_async::<Vec<redis::Value>>(&mut conn),
        )
        .await;
        metrics::histogram!("tollgate_risk_store_seconds", "store" => STORE)
            .record(started.elapsed().as_secs_f64());
        let counts = match result {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let err = RiskError::from_redis(STORE, &e);
                if err.is_unavailable() {
                    self.breaker.trip();
                }
                return Err(err);
            }
            Err(_) => {
                self.breaker.trip();
                return Err(RiskError::Timeout {
                    store: STORE,
                    after: self.deadline,
                });
            }
        };
        self.breaker.close();
        let n = self.windows.len();
        let mut counts = counts;
        let history = match with_history.then(|| counts.pop()).flatten() {
            Some(redis::Value::BulkString(b)) => {
                std::str::from_utf8(&b).ok().and_then(parse_history)
            }
            _ => None,
        };
        let Some(counts) = counts
            .iter()
            .map(|v| match v {
                redis::Value::Int(i) => u32::try_from(*i).ok(),
                _ => None,
            })
            .collect::<Option<Vec<u32>>>()
        else {
            return Err(RiskError::Protocol {
                store: STORE,
                message: "script returned a count that is not a small integer".into(),
            });
        };
        if counts.len() != n * keys.len() {
            return Err(RiskError::Protocol {
                store: STORE,
                message: format!(
                    "script returned {} counts for {} keys",
                    counts.len(),
                    keys.len()
                ),
            });
        }
        let mut chunks = counts.chunks(n.max(1)).map(<[u32]>::to_vec);
        Ok(VelocityCounts {
            ani: chunks.next().unwrap_or_default(),
            ani_dnis: by_dnis.then(|| chunks.next()).flatten(),
            npa_nxx: by_exchange.then(|| chunks.next()).flatten(),
            history,
        })
    }
}

impl VelocityStore for RedisVelocity {
    fn kind(&self) -> &'static str {
        STORE
    }

    fn windows(&self) -> &[u32] {
        &self.windows
    }

    fn record<'a>(
        &'a self,
        obs: Observation<'a>,
    ) -> BoxFuture<'a, Result<VelocityCounts, RiskError>> {
        Box::pin(self.record_inner(obs, true))
    }

    fn peek<'a>(
        &'a self,
        obs: Observation<'a>,
    ) -> BoxFuture<'a, Result<VelocityCounts, RiskError>> {
        Box::pin(self.record_inner(obs, false))
    }

    fn remember<'a>(
        &'a self,
        caller: &'a Caller,
        queue: &'a str,
        now: std::time::SystemTime,
    ) -> BoxFuture<'a, Result<(), RiskError>> {
        Box::pin(self.remember_inner(caller, queue, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use tollgate_core::E164;

    #[test]
    fn one_tag_per_call() {
        let ani = E164::from_digits("12125551212").unwrap();
        let o = Observation {
            call_id: "c",
            ani: &ani,
            dnis: Some("18005550100"),
            npa_nxx: Some((212, 555)),
            now: SystemTime::UNIX_EPOCH,
            trust: Trust::Verified,
        };
        assert_eq!(
            keys_for("tg", &o),
            vec![
                "tg:{1212555}:a:12125551212",
                "tg:{1212555}:ad:12125551212:18005550100",
                "tg:{1212555}:n"
            ]
        );
        let spoofed = Observation {
            trust: Trust::Untrusted,
            ..o
        };
        assert_eq!(
            keys_for("tg", &spoofed),
            vec![
                "tg:{1212555}:u:a:12125551212",
                "tg:{1212555}:u:ad:12125551212:18005550100",
                "tg:{1212555}:u:n"
            ]
        );
        assert_eq!(
            history_key("tg", "12125551212", Some((212, 555)), Trust::Unverified),
            "tg:{1212555}:nv:h:12125551212"
        );
        let uk = E164::from_digits("442072601815").unwrap();
        let o = Observation {
            ani: &uk,
            npa_nxx: None,
            ..o
        };
        assert_eq!(
            keys_for("tg", &o),
            vec![
                "tg:{442072601815}:a:442072601815",
                "tg:{442072601815}:ad:442072601815:18005550100"
            ]
        );
    }

    #[test]
    fn long_call_ids_become_stable_hashes() {
        assert_eq!(call_member("abc@host"), "abc@host");
        let long = "x".repeat(300);
        let m = call_member(&long);
        assert_eq!(m.len(), 34);
        assert_eq!(m, call_member(&long));
        assert_ne!(m, call_member(&"y".repeat(300)));
    }
}
