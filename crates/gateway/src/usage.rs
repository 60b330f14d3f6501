//! Usage history and the ledger as people read them: time ranges, groups, and
//! the entries' kinds on the wire. Amounts stay integer units of 1/10000
//! credit, summed by the database from the ledger itself, so a report agrees
//! with the ledger to the unit. No HTTP types here.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ids::AccountId;
use crate::limits::{format_utc_date, parse_utc_date};
use crate::store::{LedgerRow, Store, UsageGroup, UsageRow};

const DAY_MS: i64 = 86_400_000;
/// The default range: the last 30 days.
const DEFAULT_DAYS: i64 = 30;
/// The longest range one report covers.
const MAX_DAYS: i64 = 3660;

/// A half-open time range `[from, to)` in epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: i64,
    pub to: i64,
}

fn given(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// A time as the API takes it: `YYYY-MM-DD` (00:00 UTC) or Unix seconds.
fn parse_time(param: &str, s: &str) -> Result<i64, ApiError> {
    let s = s.trim();
    if let Some(ms) = parse_utc_date(s) {
        return Ok(ms);
    }
    match s.parse::<i64>() {
        Ok(secs) if (0..=253_402_300_799).contains(&secs) => Ok(secs * 1000),
        _ => Err(ApiError::invalid(param, format!("{param} must be a date (YYYY-MM-DD, UTC) or Unix seconds."))),
    }
}

impl Range {
    /// `from` and `to` as given (either may be absent: `to` is now, `from` 30
    /// days before `to`); `from` must come before `to`, at most ten years apart.
    pub fn parse(from: Option<&str>, to: Option<&str>, now_ms: i64) -> Result<Self, ApiError> {
        let to = match given(to) {
            Some(s) => parse_time("to", s)?,
            None => now_ms,
        };
        let from = match given(from) {
            Some(s) => parse_time("from", s)?,
            None => to - DEFAULT_DAYS * DAY_MS,
        };
        if from >= to {
            return Err(ApiError::invalid("from", "from must be before to."));
        }
        if to - from > MAX_DAYS * DAY_MS {
            return Err(ApiError::invalid("from", format!("A report covers at most {MAX_DAYS} days.")));
        }
        Ok(Self { from, to })
    }
}

/// `day`, `key`, `model` (and, for the operator, `account`).
pub fn parse_group(s: Option<&str>, allow_account: bool) -> Result<UsageGroup, ApiError> {
    match s.map(str::trim).unwrap_or("day") {
        "" | "day" => Ok(UsageGroup::Day),
        "key" => Ok(UsageGroup::Key),
        "model" => Ok(UsageGroup::Model),
        "account" if allow_account => Ok(UsageGroup::Account),
        _ => Err(ApiError::invalid(
            "group_by",
            if allow_account {
                "group_by must be day, key, model or account."
            } else {
                "group_by must be day, key or model."
            },
        )),
    }
}

/// One line of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageLine {
    /// The UTC day (`YYYY-MM-DD`), key id, model or account id.
    pub group: String,
    /// Tasks completed and charged.
    pub tasks: i64,
    /// Units of 1/10000 credit charged (the sum of the ledger's `charge` entries).
    pub credits_charged: i64,
    /// Seconds of video of those tasks.
    pub video_seconds: i64,
}

/// A usage report and its totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct UsageReport {
    /// Unix seconds, inclusive.
    pub from: i64,
    /// Unix seconds, exclusive.
    pub to: i64,
    /// `day`, `key`, `model` or `account`.
    pub group_by: String,
    pub data: Vec<UsageLine>,
    pub total: UsageLine,
}

fn group_name(g: UsageGroup) -> &'static str {
    match g {
        UsageGroup::Day => "day",
        UsageGroup::Key => "key",
        UsageGroup::Model => "model",
        UsageGroup::Account => "account",
    }
}

fn line(r: UsageRow, group: UsageGroup) -> UsageLine {
    let name = match group {
        UsageGroup::Day => r.grp.parse::<i64>().map(|d| format_utc_date(d * DAY_MS)).unwrap_or(r.grp),
        _ => r.grp,
    };
    UsageLine { group: name, tasks: r.tasks, credits_charged: r.credits_charged, video_seconds: r.video_seconds }
}

/// Usage in `range`, grouped; one account's, or (for the operator) everyone's.
pub async fn report(
    store: &Store,
    account: Option<&AccountId>,
    range: Range,
    group: UsageGroup,
) -> Result<UsageReport, ApiError> {
    let data: Vec<UsageLine> =
        store.usage(account, range.from, range.to, group).await?.into_iter().map(|r| line(r, group)).collect();
    let total = UsageLine {
        group: "total".to_owned(),
        tasks: data.iter().map(|l| l.tasks).sum(),
        credits_charged: data.iter().map(|l| l.credits_charged).sum(),
        video_seconds: data.iter().map(|l| l.video_seconds).sum(),
    };
    Ok(UsageReport {
        from: range.from / 1000,
        to: range.to / 1000,
        group_by: group_name(group).to_owned(),
        data,
        total,
    })
}

/// What a ledger entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Credits added by the operator, a top-up code or sign-up (negative: taken back).
    Grant,
    /// A task's price moved from available to held.
    Hold,
    /// A completed task's charge: held to used.
    Charge,
    /// A failed or cancelled task's hold given back.
    Release,
    /// The part of a completed task's hold it did not cost, given back.
    Refund,
}

/// One movement of credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: i64,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    pub kind: EntryKind,
    /// Units of 1/10000 credit.
    pub amount: i64,
    pub task_id: Option<String>,
    pub note: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
}

fn entry(r: LedgerRow) -> LedgerEntry {
    let kind = match (r.kind.as_str(), r.note.as_deref()) {
        ("hold", _) => EntryKind::Hold,
        ("settle", Some("release")) => EntryKind::Release,
        ("settle", _) => EntryKind::Charge,
        ("refund", _) => EntryKind::Refund,
        _ => EntryKind::Grant,
    };
    // A settlement's note only repeats its kind.
    let note = if r.kind == "settle" { None } else { r.note };
    LedgerEntry {
        id: r.id,
        account_id: r.account_id,
        kind,
        amount: r.amount,
        task_id: r.task_id,
        note,
        created_at: r.created_at,
    }
}

/// A page of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LedgerPage {
    pub data: Vec<LedgerEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last.
    pub next_cursor: Option<String>,
}

/// An opaque cursor over a table ordered by a numeric id.
pub fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("id:{id}"))
}

pub fn decode_cursor(c: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(c) = c.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("id:").and_then(|n| n.parse::<i64>().ok()))
        .filter(|n| *n > 0)
        .map(Some)
        .ok_or_else(|| ApiError::invalid("cursor", "The cursor is not valid."))
}

/// A page size: 1..=`max`, `default` when absent.
pub fn parse_limit(s: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match s.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid("limit", format!("limit must be an integer from 1 to {max}."))),
        },
    }
}

/// One page of the ledger, newest first.
pub async fn ledger(
    store: &Store,
    account: Option<&AccountId>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<LedgerPage, ApiError> {
    let before = decode_cursor(cursor)?;
    let rows = store.ledger_page(account, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let data: Vec<LedgerEntry> = rows.into_iter().take(limit as usize).map(entry).collect();
    let next_cursor = if more { data.last().map(|e| encode_cursor(e.id)) } else { None };
    Ok(LedgerPage { data, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_720_000_000; // 2025-12-03

    #[test]
    fn ranges_default_to_the_last_thirty_days_and_name_their_bad_end() {
        assert_eq!(Range::parse(None, None, NOW).ok(), Some(Range { from: NOW - 30 * DAY_MS, to: NOW }));
        let r = Range::parse(Some("2025-12-01"), Some("1764720000"), NOW).ok();
        assert_eq!(r, Some(Range { from: NOW - 2 * DAY_MS, to: NOW }));
        let param = |f: Option<&str>, t: Option<&str>| Range::parse(f, t, NOW).err().and_then(|e| e.param);
        assert_eq!(param(Some("yesterday"), None).as_deref(), Some("from"));
        assert_eq!(param(None, Some("2025-02-30")).as_deref(), Some("to"));
        assert_eq!(param(Some("2025-12-04"), Some("2025-12-03")).as_deref(), Some("from"));
        assert_eq!(param(Some("1990-01-01"), None).as_deref(), Some("from"));
        assert_eq!(param(None, Some("99999999999999999999")).as_deref(), Some("to"));
    }

    #[test]
    fn settle_entries_read_as_charge_or_release() {
        let row = |kind: &str, note: Option<&str>| LedgerRow {
            id: 1,
            account_id: AccountId::from_raw("a"),
            task_id: None,
            kind: kind.to_owned(),
            amount: 5,
            note: note.map(str::to_owned),
            created_at: 0,
        };
        assert_eq!(entry(row("settle", Some("charge"))).kind, EntryKind::Charge);
        assert_eq!(entry(row("settle", Some("release"))).kind, EntryKind::Release);
        assert_eq!(entry(row("refund", Some("x"))).kind, EntryKind::Refund);
        assert_eq!(entry(row("hold", None)).kind, EntryKind::Hold);
        let grant = entry(row("grant", Some("code ABC")));
        assert_eq!((grant.kind, grant.note.as_deref()), (EntryKind::Grant, Some("code ABC")));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(Some(&encode_cursor(42))).ok(), Some(Some(42)));
        assert_eq!(decode_cursor(None).ok(), Some(None));
        assert_eq!(decode_cursor(Some("!!")).err().and_then(|e| e.param).as_deref(), Some("cursor"));
        assert_eq!(parse_limit(Some("0"), 50, 500).err().and_then(|e| e.param).as_deref(), Some("limit"));
        assert_eq!(parse_limit(None, 50, 500).ok(), Some(50));
    }
}
