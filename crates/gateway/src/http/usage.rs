//! Usage history and the ledger: `GET /v1/usage`, `GET /v1/credits/ledger` for
//! the caller's account and `GET /admin/usage`, `GET /admin/ledger` across
//! accounts; each answers CSV when asked with `Accept: text/csv`. Amounts are
//! integer units of 1/10000 credit, exactly as the ledger holds them.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use vidgate_api::error::ErrorBody;

use crate::error::ApiError;
use crate::http::auth::Admin;
use crate::http::extract::Query;
use crate::ids::AccountId;
use crate::state::AppState;
use crate::tasks::Caller;
use crate::usage::{self, LedgerEntry, LedgerPage, Range, UsageReport};
use crate::{limits, util};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/usage", get(my_usage))
        .route("/v1/credits/ledger", get(my_ledger))
        .route("/admin/usage", get(admin_usage))
        .route("/admin/ledger", get(admin_ledger))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start, inclusive: a UTC date `YYYY-MM-DD` or Unix seconds (default: 30 days before `to`).
    #[param(max_length = 20)]
    pub from: Option<String>,
    /// End, exclusive: a UTC date `YYYY-MM-DD` or Unix seconds (default: now).
    #[param(max_length = 20)]
    pub to: Option<String>,
    /// `day` (default), `key` or `model`.
    #[param(max_length = 10)]
    pub group_by: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminUsageQuery {
    /// Only this account (default: every account).
    #[param(max_length = 200)]
    pub account: Option<String>,
    /// Start, inclusive: a UTC date `YYYY-MM-DD` or Unix seconds (default: 30 days before `to`).
    #[param(max_length = 20)]
    pub from: Option<String>,
    /// End, exclusive: a UTC date `YYYY-MM-DD` or Unix seconds (default: now).
    #[param(max_length = 20)]
    pub to: Option<String>,
    /// `day` (default), `key`, `model` or `account`.
    #[param(max_length = 10)]
    pub group_by: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// `next_cursor` of the previous page (or the `X-Next-Cursor` header of a CSV page).
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdminLedgerQuery {
    /// Only this account (default: every account).
    #[param(max_length = 200)]
    pub account: Option<String>,
    /// `next_cursor` of the previous page (or the `X-Next-Cursor` header of a CSV page).
    #[param(max_length = 512)]
    pub cursor: Option<String>,
    /// Page size, 1..=1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// True when the client asked for CSV.
fn wants_csv(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|v| {
        v.split(',').any(|part| part.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/csv")))
    })
}

/// One CSV field: quoted when it must be, and a text that a spreadsheet would
/// read as a formula is prefixed with `'` (client-supplied notes end up here).
fn csv_text(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn csv_response(body: String, next_cursor: Option<&str>) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response();
    if let Some(c) = next_cursor.and_then(|c| HeaderValue::from_str(c).ok()) {
        resp.headers_mut().insert("x-next-cursor", c);
    }
    resp
}

fn usage_csv(report: &UsageReport) -> Response {
    let mut out = format!("{},tasks,credits_charged,video_seconds\n", report.group_by);
    for l in &report.data {
        out.push_str(&format!("{},{},{},{}\n", csv_text(&l.group), l.tasks, l.credits_charged, l.video_seconds));
    }
    csv_response(out, None)
}

/// `2025-12-03T10:20:30.456Z`.
fn iso_ms(ms: i64) -> String {
    let base = limits::format_utc(ms);
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

fn ledger_csv(page: &LedgerPage) -> Response {
    let mut out = String::from("id,created_at,account_id,kind,amount,task_id,note\n");
    for e in &page.data {
        let LedgerEntry { id, account_id, kind, amount, task_id, note, created_at } = e;
        let kind = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        out.push_str(&format!(
            "{id},{},{},{kind},{amount},{},{}\n",
            iso_ms(*created_at),
            csv_text(account_id.as_str()),
            csv_text(task_id.as_deref().unwrap_or("")),
            csv_text(note.as_deref().unwrap_or("")),
        ));
    }
    csv_response(out, page.next_cursor.as_deref())
}

fn usage_answer(headers: &HeaderMap, report: UsageReport) -> Response {
    if wants_csv(headers) { usage_csv(&report) } else { Json(report).into_response() }
}

fn ledger_answer(headers: &HeaderMap, page: LedgerPage) -> Response {
    if wants_csv(headers) { ledger_csv(&page) } else { Json(page).into_response() }
}

fn account_filter(account: Option<String>) -> Result<Option<AccountId>, ApiError> {
    match account.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()) {
        Some(a) if a.chars().count() > 200 => Err(ApiError::invalid("account", "account is too long.")),
        other => Ok(other.map(AccountId::from_raw)),
    }
}

/// The caller's account's usage: completed tasks, credits charged and seconds
/// of video, by UTC day, key or model, over a range (default the last 30
/// days). Credits are counted when charged, in units of 1/10000 credit, and
/// add up to the ledger's `charge` entries to the unit.
#[utoipa::path(get, path = "/v1/usage", operation_id = "v1.usage.get", tag = "account",
    params(UsageQuery, ("Accept" = Option<String>, Header, description = "`text/csv` for CSV.")),
    responses(
        (status = 200, description = "The report.", content((UsageReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad range or grouping; `error.param` names it.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn my_usage(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<UsageQuery>,
) -> Result<Response, ApiError> {
    let range = Range::parse(q.from.as_deref(), q.to.as_deref(), util::now_ms())?;
    let group = usage::parse_group(q.group_by.as_deref(), false)?;
    let report = usage::report(&state.store, Some(&caller.account_id), range, group).await?;
    Ok(usage_answer(&headers, report))
}

/// The caller's account's ledger, newest first: every grant (operator grants,
/// top-up codes, sign-up credits), hold, charge, release and refund, in units
/// of 1/10000 credit.
#[utoipa::path(get, path = "/v1/credits/ledger", operation_id = "v1.credits.ledger", tag = "account",
    params(LedgerQuery, ("Accept" = Option<String>, Header, description = "`text/csv` for CSV.")),
    responses(
        (status = 200, description = "One page; CSV pages carry the next cursor in `X-Next-Cursor`.",
            content((LedgerPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad cursor or limit.", body = ErrorBody),
        (status = 401, description = "Missing or invalid API key.", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn my_ledger(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<LedgerQuery>,
) -> Result<Response, ApiError> {
    let limit = usage::parse_limit(q.limit.as_deref(), 100, 1000)?;
    let page = usage::ledger(&state.store, Some(&caller.account_id), q.cursor.as_deref(), limit).await?;
    Ok(ledger_answer(&headers, page))
}

/// Usage across accounts (or of one, with `account`), by UTC day, key, model
/// or account.
#[utoipa::path(get, path = "/admin/usage", operation_id = "admin.usage.get", tag = "admin",
    params(AdminUsageQuery, ("Accept" = Option<String>, Header, description = "`text/csv` for CSV.")),
    responses(
        (status = 200, description = "The report.", content((UsageReport = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad range or grouping; `error.param` names it.", body = ErrorBody),
        (status = 401, description = "Not the admin key.", body = ErrorBody),
    ),
    security(("admin" = [])))]
pub async fn admin_usage(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    Query(q): Query<AdminUsageQuery>,
) -> Result<Response, ApiError> {
    let range = Range::parse(q.from.as_deref(), q.to.as_deref(), util::now_ms())?;
    let group = usage::parse_group(q.group_by.as_deref(), true)?;
    let account = account_filter(q.account)?;
    let report = usage::report(&state.store, account.as_ref(), range, group).await?;
    Ok(usage_answer(&headers, report))
}

/// The ledger across accounts (or of one, with `account`), newest first.
#[utoipa::path(get, path = "/admin/ledger", operation_id = "admin.ledger.list", tag = "admin",
    params(AdminLedgerQuery, ("Accept" = Option<String>, Header, description = "`text/csv` for CSV.")),
    responses(
        (status = 200, description = "One page; CSV pages carry the next cursor in `X-Next-Cursor`.",
            content((LedgerPage = "application/json"), (String = "text/csv"))),
        (status = 400, description = "A bad cursor or limit.", body = ErrorBody),
        (status = 401, description = "Not the admin key.", body = ErrorBody),
    ),
    security(("admin" = [])))]
pub async fn admin_ledger(
    State(state): State<AppState>,
    _admin: Admin,
    headers: HeaderMap,
    Query(q): Query<AdminLedgerQuery>,
) -> Result<Response, ApiError> {
    let limit = usage::parse_limit(q.limit.as_deref(), 100, 1000)?;
    let account = account_filter(q.account)?;
    let page = usage::ledger(&state.store, account.as_ref(), q.cursor.as_deref(), limit).await?;
    Ok(ledger_answer(&headers, page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_text("plain"), "plain");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_text("-1"), "'-1");
        assert_eq!(iso_ms(1_764_720_000_456), "2025-12-03T00:00:00.456Z");
    }

    #[test]
    fn csv_is_chosen_by_the_accept_header() {
        let mut h = HeaderMap::new();
        assert!(!wants_csv(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json, text/csv;q=0.9"));
        assert!(wants_csv(&h));
        h.insert(header::ACCEPT, HeaderValue::from_static("text/csvx"));
        assert!(!wants_csv(&h));
    }
}
