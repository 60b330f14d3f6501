//! Per-key limits as pure rules, with no IO: budgets over UTC calendar periods,
//! the sliding one-minute window behind `rpm`, UTC dates, and the refusal a
//! create gets when a limit or the balance says no. The store applies these
//! rules inside the create's transaction, so they hold under concurrency.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::KeyId;

const DAY_MS: i64 = 86_400_000;

/// The calendar period a key's budget counts over, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// From 00:00 UTC to the next midnight.
    Day,
    /// From the first of the month, 00:00 UTC, to the first of the next.
    Month,
    /// Forever: the budget never resets.
    Total,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
            Self::Total => "total",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            "total" => Some(Self::Total),
            _ => None,
        }
    }

    /// When the period holding `now_ms` began (0 for `total`).
    pub fn start(self, now_ms: i64) -> i64 {
        match self {
            Self::Day => now_ms.div_euclid(DAY_MS) * DAY_MS,
            Self::Month => {
                let (y, m, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
                days_from_civil(y, m, 1) * DAY_MS
            }
            Self::Total => 0,
        }
    }

    /// When the period holding `now_ms` ends and the budget starts afresh.
    pub fn next_reset(self, now_ms: i64) -> Option<i64> {
        match self {
            Self::Day => Some(self.start(now_ms) + DAY_MS),
            Self::Month => {
                let (y, m, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some(days_from_civil(y, m, 1) * DAY_MS)
            }
            Self::Total => None,
        }
    }

    /// "daily", "monthly", "total": for messages.
    pub fn adjective(self) -> &'static str {
        match self {
            Self::Day => "daily",
            Self::Month => "monthly",
            Self::Total => "total",
        }
    }
}

/// The models a key may use: all (`None`) or a list, stored comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedModels(pub Option<Vec<String>>);

impl AllowedModels {
    pub fn allows(&self, model: &str) -> bool {
        self.0.as_ref().is_none_or(|list| list.iter().any(|m| m == model))
    }

    /// True when every model this allows, `other` allows too.
    pub fn within(&self, other: &AllowedModels) -> bool {
        match (&self.0, &other.0) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(mine), Some(_)) => mine.iter().all(|m| other.allows(m)),
        }
    }

    /// The stored form: comma-separated, or NULL for all.
    pub fn column(&self) -> Option<String> {
        self.0.as_ref().map(|m| m.join(","))
    }
}

impl From<Option<String>> for AllowedModels {
    fn from(s: Option<String>) -> Self {
        Self(s.map(|s| s.split(',').filter(|m| !m.is_empty()).map(str::to_owned).collect()))
    }
}

/// Everything that limits what one key may do, as an operator sets it. `None`
/// means no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyLimits {
    pub allowed_models: AllowedModels,
    /// Creates per minute.
    pub rpm: Option<i64>,
    /// Tasks pending or processing at once.
    pub max_concurrent: Option<i64>,
    pub budget: Option<Budget>,
}

impl KeyLimits {
    /// The first limit of `self` that `outer` does not cover, by field name:
    /// a key may only make keys that can do no more than itself.
    pub fn first_excess(&self, outer: &KeyLimits) -> Option<&'static str> {
        let higher = |mine: Option<i64>, theirs: Option<i64>| match (mine, theirs) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(m), Some(t)) => m > t,
        };
        if !self.allowed_models.within(&outer.allowed_models) {
            return Some("allowed_models");
        }
        if higher(self.rpm, outer.rpm) {
            return Some("rpm");
        }
        if higher(self.max_concurrent, outer.max_concurrent) {
            return Some("max_concurrent");
        }
        match (&self.budget, &outer.budget) {
            (_, None) => None,
            (None, Some(_)) => Some("budget_credits"),
            (Some(mine), Some(theirs)) if mine.credits > theirs.credits => Some("budget_credits"),
            (Some(mine), Some(theirs)) if !mine.within(theirs) => Some("budget_period"),
            _ => None,
        }
    }
}

/// A key's budget: at most `credits` units held or charged per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub credits: i64,
    pub period: BudgetPeriod,
}

impl Budget {
    /// True when a key with this budget can never spend more than one with
    /// `other` can: no more credits, over a period that resets no more often
    /// (a monthly 10 fits under a daily 10; a daily 10 does not fit under a
    /// monthly 10, since it allows 300 a month).
    pub fn within(&self, other: &Budget) -> bool {
        self.credits <= other.credits && self.period >= other.period
    }
}

/// What a key has spent against its budget, as the key row keeps it: `spent`
/// over its whole life, and `period_spent` since `period_start` (both count
/// holds and charges; a release gives back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetUse {
    pub spent: i64,
    pub period_start: i64,
    pub period_spent: i64,
}

impl BudgetUse {
    /// Units counted against `budget` at `now_ms`: a stored period that has
    /// ended counts nothing (a replica whose clock runs a little ahead may have
    /// stored a later start: that still counts as the current period).
    pub fn used(&self, period: BudgetPeriod, now_ms: i64) -> i64 {
        match period {
            BudgetPeriod::Total => self.spent,
            p if self.period_start >= p.start(now_ms) => self.period_spent,
            _ => 0,
        }
    }

    /// Units the budget still allows at `now_ms` (never negative).
    pub fn left(&self, budget: &Budget, now_ms: i64) -> i64 {
        (budget.credits - self.used(budget.period, now_ms)).max(0)
    }

    /// Counts `amount` more against `budget` at `now_ms`: the new counters, or
    /// `None` when that would pass the budget. `spent` is kept by the caller.
    pub fn charge(&self, budget: &Budget, amount: i64, now_ms: i64) -> Option<BudgetUse> {
        let used = self.used(budget.period, now_ms);
        if used.checked_add(amount)? > budget.credits {
            return None;
        }
        let period_start = match budget.period {
            BudgetPeriod::Total => self.period_start,
            p => self.period_start.max(p.start(now_ms)),
        };
        let period_spent = match budget.period {
            BudgetPeriod::Total => self.period_spent,
            _ => used + amount,
        };
        Some(BudgetUse { spent: self.spent, period_start, period_spent })
    }
}

/// How many creates a key made in each of its recent seconds: the memory behind
/// `rpm`. Stored on the key row as `second:count,...`, oldest first; at most 61
/// entries, whatever the limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateWindow(Vec<(i64, i64)>);

/// Seconds a create counts against `rpm`: its own second and the 60 before, so a
/// key never makes more than `rpm` creates in any 60 seconds.
const WINDOW_SECS: i64 = 60;

impl RateWindow {
    /// Reads the stored form; unreadable entries are dropped (they can only
    /// make the limit more lenient, never stricter than it should be).
    pub fn parse(stored: Option<&str>) -> Self {
        let mut entries: Vec<(i64, i64)> = stored
            .unwrap_or_default()
            .split(',')
            .filter_map(|e| {
                let (s, c) = e.split_once(':')?;
                Some((s.trim().parse().ok()?, c.trim().parse().ok()?))
            })
            .filter(|&(_, c)| c > 0)
            .collect();
        entries.sort_unstable();
        Self(entries)
    }

    pub fn render(&self) -> String {
        self.0.iter().map(|(s, c)| format!("{s}:{c}")).collect::<Vec<_>>().join(",")
    }

    /// Admits one create at `now_ms` under at most `rpm` creates per minute:
    /// the window with it counted, or in how many whole seconds a create would
    /// be admitted.
    pub fn admit(&self, now_ms: i64, rpm: i64) -> Result<RateWindow, u64> {
        let now = now_ms.div_euclid(1000);
        let live: Vec<(i64, i64)> = self.0.iter().copied().filter(|&(s, _)| s >= now - WINDOW_SECS).collect();
        let count: i64 = live.iter().map(|&(_, c)| c).sum();
        if count < rpm {
            let mut next = live;
            match next.last_mut() {
                Some((s, c)) if *s == now => *c += 1,
                // A clock a little behind another replica's: count it in the latest second.
                Some((s, c)) if *s > now => *c += 1,
                _ => next.push((now, 1)),
            }
            return Ok(RateWindow(next));
        }
        // The oldest seconds leave the window first; wait until enough have.
        let mut gone = 0;
        for &(s, c) in &live {
            gone += c;
            if count - gone < rpm {
                return Err(u64::try_from(s + WINDOW_SECS + 1 - now).unwrap_or(1).max(1));
            }
        }
        Err(u64::try_from(WINDOW_SECS + 1).unwrap_or(61))
    }
}

/// Why a create was refused. Nothing was created or held; `ApiError::from` (in
/// `accounts`) logs it with the key id (never the key) and shapes the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The account's available balance does not cover the price.
    InsufficientQuota { key_id: KeyId, needed: i64 },
    /// More creates in the last minute than `rpm` allows.
    Rpm { key_id: KeyId, limit: i64, retry_after: u64 },
    /// As many tasks pending or processing as `max_concurrent` allows.
    Concurrency { key_id: KeyId, limit: i64, retry_after: u64 },
    /// The key's budget for its period does not cover the price.
    Budget { key_id: KeyId, budget: Budget, used: i64, needed: i64, resets_at: Option<i64> },
    /// The key was revoked, or its account disabled, since it was checked.
    Revoked { key_id: KeyId },
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { era * 400 + yoe + 1 } else { era * 400 + yoe }, m, d)
}

/// `2025-12-03` for a time in epoch milliseconds (UTC).
pub fn format_utc_date(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2025-12-03T00:00:00Z` for a time in epoch milliseconds.
pub fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{}T{:02}:{:02}:{:02}Z", format_utc_date(ms), secs / 3600, secs / 60 % 60, secs % 60)
}

/// Epoch milliseconds of 00:00 UTC on a `YYYY-MM-DD` date; `None` when it is
/// not a real date.
pub fn parse_utc_date(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // A day past the month's end would land in the next month.
    (civil_from_days(days) == (y, m, d)).then_some(days * DAY_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_764_720_000_000; // 2025-12-03T00:00:00Z

    #[test]
    fn dates_round_trip_and_refuse_impossible_days() {
        assert_eq!(format_utc(T), "2025-12-03T00:00:00Z");
        assert_eq!(format_utc(T + 3_723_000), "2025-12-03T01:02:03Z");
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_utc_date("2025-12-03"), Some(T));
        assert_eq!(parse_utc_date("2024-02-29").map(format_utc_date).as_deref(), Some("2024-02-29"));
        for bad in ["2025-02-29", "2025-13-01", "2025-00-10", "2025-1-01", "25-01-01", "2025-01-01-01", "x"] {
            assert_eq!(parse_utc_date(bad), None, "{bad}");
        }
        for days in [-800_000, -1, 0, 59, 11_016, 20_425, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn periods_start_and_reset_at_utc_boundaries() {
        let noon = T + 12 * 3_600_000;
        assert_eq!(BudgetPeriod::Day.start(noon), T);
        assert_eq!(BudgetPeriod::Day.next_reset(noon), Some(T + DAY_MS));
        assert_eq!(format_utc(BudgetPeriod::Month.start(noon)), "2025-12-01T00:00:00Z");
        assert_eq!(BudgetPeriod::Month.next_reset(noon).map(format_utc).as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(BudgetPeriod::Total.start(noon), 0);
        assert_eq!(BudgetPeriod::Total.next_reset(noon), None);
        // The last millisecond of a month still belongs to it.
        let jan1 = BudgetPeriod::Month.next_reset(noon).unwrap_or_default();
        assert_eq!(format_utc(BudgetPeriod::Month.start(jan1 - 1)), "2025-12-01T00:00:00Z");
        assert_eq!(BudgetPeriod::Month.start(jan1), jan1);
    }

    #[test]
    fn a_budget_counts_only_its_current_period() {
        let day = Budget { credits: 100, period: BudgetPeriod::Day };
        let u = BudgetUse { spent: 500, period_start: T, period_spent: 90 };
        assert_eq!(u.left(&day, T + 5), 10);
        assert_eq!(u.charge(&day, 11, T + 5), None);
        let after = u.charge(&day, 10, T + 5);
        assert_eq!(after, Some(BudgetUse { spent: 500, period_start: T, period_spent: 100 }));
        // The next day starts afresh.
        let tomorrow = T + DAY_MS + 1;
        assert_eq!(u.left(&day, tomorrow), 100);
        assert_eq!(
            u.charge(&day, 100, tomorrow),
            Some(BudgetUse { spent: 500, period_start: T + DAY_MS, period_spent: 100 })
        );
        // A total budget reads the lifetime counter.
        let total = Budget { credits: 600, period: BudgetPeriod::Total };
        assert_eq!(u.left(&total, tomorrow), 100);
        assert_eq!(u.charge(&total, 101, tomorrow), None);
        assert!(u.charge(&total, 100, tomorrow).is_some());
    }

    #[test]
    fn a_budget_fits_under_another_only_if_it_can_never_spend_more() {
        let b = |credits, period| Budget { credits, period };
        assert!(b(10, BudgetPeriod::Month).within(&b(10, BudgetPeriod::Day)));
        assert!(b(10, BudgetPeriod::Total).within(&b(10, BudgetPeriod::Day)));
        assert!(!b(10, BudgetPeriod::Day).within(&b(10, BudgetPeriod::Month)));
        assert!(!b(11, BudgetPeriod::Total).within(&b(10, BudgetPeriod::Total)));
        assert!(b(9, BudgetPeriod::Day).within(&b(10, BudgetPeriod::Day)));
    }

    #[test]
    fn the_rate_window_admits_rpm_creates_in_any_sixty_seconds() {
        let mut w = RateWindow::default();
        let t = T;
        for i in 0..3 {
            w = w.admit(t + i * 100, 3).unwrap_or_default();
        }
        assert_eq!(w.render(), format!("{}:3", t / 1000));
        // The fourth waits until the second of the first three has left the window.
        assert_eq!(w.admit(t + 500, 3), Err(61));
        assert_eq!(w.admit(t + 30_000, 3), Err(31));
        assert!(w.admit(t + 60_999, 3).is_err());
        assert!(w.admit(t + 61_000, 3).is_ok());
        // Spread out: the oldest leaves first.
        let mut w = RateWindow::default();
        for s in [0, 10, 20] {
            w = w.admit(t + s * 1000, 3).unwrap_or_default();
        }
        assert_eq!(w.admit(t + 25_000, 3), Err(36));
        let w = w.admit(t + 61_000, 3).unwrap_or_default();
        assert_eq!(w.render(), format!("{}:1,{}:1,{}:1", t / 1000 + 10, t / 1000 + 20, t / 1000 + 61));
    }

    #[test]
    fn a_key_may_only_make_keys_that_can_do_no_more_than_itself() {
        fn models(m: &[&str]) -> AllowedModels {
            AllowedModels(Some(m.iter().map(|s| (*s).to_owned()).collect()))
        }
        let outer = KeyLimits {
            allowed_models: models(&["a", "b"]),
            rpm: Some(10),
            max_concurrent: Some(3),
            budget: Some(Budget { credits: 100, period: BudgetPeriod::Day }),
        };
        assert_eq!(outer.first_excess(&outer), None);
        let with = |f: fn(&mut KeyLimits)| {
            let mut k = outer.clone();
            f(&mut k);
            k.first_excess(&outer)
        };
        assert_eq!(with(|k| k.allowed_models = models(&["a"])), None);
        assert_eq!(with(|k| k.allowed_models = models(&["a", "c"])), Some("allowed_models"));
        assert_eq!(with(|k| k.allowed_models = AllowedModels(None)), Some("allowed_models"));
        assert_eq!(with(|k| k.rpm = Some(11)), Some("rpm"));
        assert_eq!(with(|k| k.rpm = None), Some("rpm"));
        assert_eq!(with(|k| k.max_concurrent = Some(4)), Some("max_concurrent"));
        assert_eq!(with(|k| k.budget = None), Some("budget_credits"));
        assert_eq!(
            with(|k| k.budget = Some(Budget { credits: 101, period: BudgetPeriod::Total })),
            Some("budget_credits")
        );
        assert_eq!(with(|k| k.budget = Some(Budget { credits: 50, period: BudgetPeriod::Month })), None);
        let monthly = KeyLimits { budget: Some(Budget { credits: 100, period: BudgetPeriod::Month }), ..outer.clone() };
        assert_eq!(outer.first_excess(&monthly), Some("budget_period"));
        // Under a key with no limits, anything goes.
        assert_eq!(outer.first_excess(&KeyLimits::default()), None);
    }

    #[test]
    fn a_garbled_rate_window_reads_as_what_it_can() {
        let w = RateWindow::parse(Some("5:2,x,7:y,6:1,8:0"));
        assert_eq!(w.render(), "5:2,6:1");
        assert_eq!(RateWindow::parse(None), RateWindow::default());
    }
}
