//! The ledger: every movement of credits, written in the same transaction as the
//! account buckets it changes. A task's price is held at create (`hold`) and
//! settled once when it ends (`settle`: charged on completion, released on
//! failure); the unique (task, kind) index makes a second settlement impossible.

use sqlx::{AnyConnection, Row};

use vidgate_api::task::TaskStatus;

use super::accounts::budget_of;
use super::audit::{self, Actor, Entry};
use super::tasks::TaskRow;
use super::{Result, Store};
use crate::ids::{AccountId, KeyId, TaskId};
use crate::limits::{BudgetPeriod, BudgetUse, RateWindow, Refusal};

/// Records a grant (or, negative, a take-back) of credits to an account.
pub(super) async fn insert_grant(
    tx: &mut AnyConnection,
    account_id: &AccountId,
    amount: i64,
    note: &str,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO ledger (account_id, kind, amount, note, created_at) VALUES ($1, 'grant', $2, $3, $4)")
        .bind(account_id)
        .bind(amount)
        .bind(note)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The limits and counters of a key, read under the row lock a hold takes.
#[derive(Debug, Clone, sqlx::FromRow)]
struct KeyState {
    rpm: Option<i64>,
    max_concurrent: Option<i64>,
    budget_credits: Option<i64>,
    budget_period: Option<String>,
    /// Already counting this hold.
    spent: i64,
    period_start: i64,
    period_spent: i64,
    rate_window: Option<String>,
    /// The key's tasks pending or processing, this one included.
    open_tasks: i64,
}

/// The counters a hold that passes writes back to the key.
struct Admitted {
    rate_window: Option<String>,
    budget: Option<BudgetUse>,
}

/// Moves `amount` from the account's balance to held and counts it against the
/// key's limits (`rpm`, `max_concurrent`, its budget). The `hold` ledger entry
/// is the caller's to write, in the same transaction (`tasks::insert_created`
/// writes the entries of a whole batch of creates in one statement). The
/// account row is locked first and the key row second, the order a settlement takes them in
/// (the other order deadlocks against finishing tasks on PostgreSQL); holding
/// the account's lock, concurrent creates of its keys, on any replica, are
/// checked one after another and each check reads what the ones before
/// committed. A refused hold undoes its own changes, leaving the transaction as
/// it found it (so several creates can share one transaction).
pub(super) async fn hold(
    tx: &mut AnyConnection,
    account_id: &AccountId,
    key_id: &KeyId,
    amount: i64,
    now: i64,
) -> Result<Result<(), Refusal>> {
    if !debit(tx, account_id, amount).await? {
        let disabled = sqlx::query("SELECT disabled_at FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<Option<i64>, _>("disabled_at"))
            .transpose()?
            .flatten()
            .is_some();
        return Ok(Err(if disabled {
            Refusal::Revoked { key_id: key_id.clone() }
        } else {
            Refusal::InsufficientQuota { key_id: key_id.clone(), needed: amount }
        }));
    }
    let Some(key) = count_on_key(tx, account_id, key_id, amount, 1).await? else {
        unhold(tx, account_id, amount).await?;
        return Ok(Err(Refusal::Revoked { key_id: key_id.clone() }));
    };
    let admitted = match admit(tx, key_id, &key, amount, now).await? {
        Ok(a) => a,
        Err(refusal) => {
            uncount(tx, key_id, amount, 1).await?;
            unhold(tx, account_id, amount).await?;
            return Ok(Err(refusal));
        }
    };
    if admitted.rate_window.is_some() || admitted.budget.is_some() {
        let budget = admitted.budget.unwrap_or(BudgetUse {
            spent: key.spent,
            period_start: key.period_start,
            period_spent: key.period_spent,
        });
        sqlx::query(
            "UPDATE api_keys SET rate_window = COALESCE($1, rate_window), period_start = $2, period_spent = $3 \
             WHERE id = $4",
        )
        .bind(admitted.rate_window)
        .bind(budget.period_start)
        .bind(budget.period_spent)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    }
    Ok(Ok(()))
}

/// Gives back a hold that was refused after the account had been debited.
async fn unhold(tx: &mut AnyConnection, account_id: &AccountId, amount: i64) -> Result<()> {
    sqlx::query("UPDATE accounts SET balance = balance + $1, held = held - $1 WHERE id = $2")
        .bind(amount)
        .bind(account_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Moves `amount` from the account's balance to held, if it has that much and
/// is not disabled (false, and nothing changed, otherwise). Locks its row.
async fn debit(tx: &mut AnyConnection, account_id: &AccountId, amount: i64) -> Result<bool> {
    let held = sqlx::query(
        "UPDATE accounts SET balance = balance - $1, held = held + $1 \
         WHERE id = $2 AND balance >= $1 AND disabled_at IS NULL",
    )
    .bind(amount)
    .bind(account_id)
    .execute(&mut *tx)
    .await?;
    Ok(held.rows_affected() == 1)
}

/// Counts `creates` more open tasks and `amount` more spent on the key, if it
/// is the account's and not revoked; its limits and counters after that (the
/// creates included), read under the row lock this takes.
async fn count_on_key(
    tx: &mut AnyConnection,
    account_id: &AccountId,
    key_id: &KeyId,
    amount: i64,
    creates: i64,
) -> Result<Option<KeyState>> {
    Ok(sqlx::query_as(
        "UPDATE api_keys SET spent = spent + $1, open_tasks = open_tasks + $4 \
         WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL \
         RETURNING rpm, max_concurrent, budget_credits, budget_period, spent, period_start, period_spent, rate_window, \
         open_tasks",
    )
    .bind(amount)
    .bind(key_id)
    .bind(account_id)
    .bind(creates)
    .fetch_optional(&mut *tx)
    .await?)
}

/// Takes back what `count_on_key` counted for holds that were refused.
async fn uncount(tx: &mut AnyConnection, key_id: &KeyId, amount: i64, creates: i64) -> Result<()> {
    sqlx::query("UPDATE api_keys SET spent = spent - $1, open_tasks = open_tasks - $2 WHERE id = $3")
        .bind(amount)
        .bind(creates)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Checks the key's limits for one more create of `amount`; writes nothing.
async fn admit(
    tx: &mut AnyConnection,
    key_id: &KeyId,
    key: &KeyState,
    amount: i64,
    now: i64,
) -> Result<Result<Admitted, Refusal>> {
    match check(key_id, key, amount, now) {
        Ok(admitted) => Ok(Ok(admitted)),
        Err(Some(refusal)) => Ok(Err(refusal)),
        Err(None) => {
            let limit = key.max_concurrent.unwrap_or_default();
            // The soonest a running task is expected to end, within a minute.
            let due: Option<i64> = sqlx::query(
                "SELECT MIN(created_at + estimated_time * 1000) AS due FROM tasks \
                 WHERE key_id = $1 AND status IN ('pending', 'processing')",
            )
            .bind(key_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("due")?;
            let wait = due.map_or(1, |d| (d - now + 999) / 1000).clamp(1, 60);
            let retry_after = u64::try_from(wait).unwrap_or(1);
            Ok(Err(Refusal::Concurrency { key_id: key_id.clone(), limit, retry_after }))
        }
    }
}

/// The key's limits for one more create of `amount`, from its counters alone
/// (`key` already counts this create): what to write back, or the refusal;
/// `Err(None)` is a refusal by `max_concurrent`, whose `Retry-After` the
/// caller reads from the key's open tasks.
fn check(key_id: &KeyId, key: &KeyState, amount: i64, now: i64) -> std::result::Result<Admitted, Option<Refusal>> {
    let rate_window = match key.rpm {
        None => None,
        Some(rpm) => match RateWindow::parse(key.rate_window.as_deref()).admit(now, rpm) {
            Ok(w) => Some(w.render()),
            Err(retry_after) => return Err(Some(Refusal::Rpm { key_id: key_id.clone(), limit: rpm, retry_after })),
        },
    };
    // The counter already counts this create: refused when the others fill it.
    if let Some(limit) = key.max_concurrent
        && key.open_tasks > limit
    {
        return Err(None);
    }
    let budget = match budget_of(key.budget_credits, key.budget_period.as_deref()) {
        None => None,
        Some(b) => {
            let before =
                BudgetUse { spent: key.spent - amount, period_start: key.period_start, period_spent: key.period_spent };
            match before.charge(&b, amount, now) {
                // The lifetime counter already counts this hold.
                Some(_) if b.period == BudgetPeriod::Total => None,
                Some(after) => Some(after),
                None => {
                    return Err(Some(Refusal::Budget {
                        key_id: key_id.clone(),
                        budget: b,
                        used: before.used(b.period, now),
                        needed: amount,
                        resets_at: b.period.next_reset(now),
                    }));
                }
            }
        }
    };
    Ok(Admitted { rate_window, budget })
}

/// Holds several creates of one key at once, `(amount, now)` each in order:
/// one statement for the account, one for the key and at most one to write
/// its windows back, where one `hold` each would take three or four. It either
/// admits them all, exactly as `hold` one after another would have, and
/// returns true, or changes nothing and returns false (some create would be
/// refused: the caller then holds them one by one, for the refusals' details).
pub(super) async fn hold_all(
    tx: &mut AnyConnection,
    account_id: &AccountId,
    key_id: &KeyId,
    creates: &[(i64, i64)],
) -> Result<bool> {
    let total: i64 = creates.iter().map(|(amount, _)| amount).sum();
    let count = i64::try_from(creates.len()).unwrap_or(i64::MAX);
    if !debit(tx, account_id, total).await? {
        return Ok(false);
    }
    let Some(key) = count_on_key(tx, account_id, key_id, total, count).await? else {
        unhold(tx, account_id, total).await?;
        return Ok(false);
    };
    // The key as each create in turn would have found it.
    let mut state = KeyState { spent: key.spent - total, open_tasks: key.open_tasks - count, ..key };
    let mut changed = false;
    for &(amount, now) in creates {
        state.spent += amount;
        state.open_tasks += 1;
        let Ok(admitted) = check(key_id, &state, amount, now) else {
            uncount(tx, key_id, total, count).await?;
            unhold(tx, account_id, total).await?;
            return Ok(false);
        };
        if let Some(window) = admitted.rate_window {
            state.rate_window = Some(window);
            changed = true;
        }
        if let Some(budget) = admitted.budget {
            (state.period_start, state.period_spent) = (budget.period_start, budget.period_spent);
            changed = true;
        }
    }
    if changed {
        sqlx::query("UPDATE api_keys SET rate_window = $1, period_start = $2, period_spent = $3 WHERE id = $4")
            .bind(&state.rate_window)
            .bind(state.period_start)
            .bind(state.period_spent)
            .bind(key_id)
            .execute(&mut *tx)
            .await?;
    }
    Ok(true)
}

/// Settles a task that has just ended (its row already final): a completed task
/// is charged `credits_charged` and the rest of its hold, if any, goes back; a
/// failed one gets its whole hold back. The unique (task, kind) entries are the
/// last line of defence against a double settlement: a second one fails and
/// rolls everything back.
pub(super) async fn settle(tx: &mut AnyConnection, task: &TaskRow, now: i64) -> Result<()> {
    let held = task.credits_reserved;
    let completed = task.status == TaskStatus::Completed;
    let charged = if completed { task.credits_charged.unwrap_or(held).clamp(0, held) } else { 0 };
    let refund = held - charged;
    if completed {
        task_entry(tx, task, "settle", charged, "charge", now).await?;
        if refund > 0 {
            task_entry(tx, task, "refund", refund, "the output cost less than was held", now).await?;
        }
    } else {
        task_entry(tx, task, "settle", held, "release", now).await?;
    }
    sqlx::query("UPDATE accounts SET held = held - $1, used = used + $2, balance = balance + $3 WHERE id = $4")
        .bind(held)
        .bind(charged)
        .bind(refund)
        .bind(&task.account_id)
        .execute(&mut *tx)
        .await?;
    // The task is no longer open for its key; what goes back leaves the key's
    // budget too: its lifetime count, and its period count when the task was
    // held in the period still counted.
    sqlx::query(
        "UPDATE api_keys SET open_tasks = open_tasks - 1, spent = spent - $1, period_spent = CASE \
         WHEN period_start > $2 THEN period_spent WHEN period_spent > $1 THEN period_spent - $1 ELSE 0 END \
         WHERE id = $3",
    )
    .bind(refund)
    .bind(task.created_at)
    .bind(&task.key_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// One ledger entry of a task's money.
async fn task_entry(
    tx: &mut AnyConnection,
    task: &TaskRow,
    kind: &str,
    amount: i64,
    note: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO ledger (account_id, task_id, kind, amount, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&task.account_id)
    .bind(&task.id)
    .bind(kind)
    .bind(amount)
    .bind(note)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

impl Store {
    /// Adds (or, with a negative amount, removes) credits; never below zero.
    /// Returns the new balance, or `None` when the account does not exist or the
    /// removal would make the balance negative. Audited.
    #[tracing::instrument(skip_all)]
    pub async fn grant_credits(
        &self,
        account_id: &AccountId,
        amount: i64,
        note: &str,
        actor: &Actor,
    ) -> Result<Option<i64>> {
        let now = crate::util::now_ms();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE accounts SET balance = balance + $1 WHERE id = $2 AND balance + $1 >= 0 \
             RETURNING balance",
        )
        .bind(amount)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let balance: i64 = row.try_get("balance")?;
        insert_grant(&mut tx, account_id, amount, note, now).await?;
        let entry = Entry {
            action: "account.grant",
            target: account_id.as_str(),
            account_id: Some(account_id),
            before: Some(serde_json::json!({"balance": balance - amount})),
            after: Some(serde_json::json!({"balance": balance, "amount": amount, "note": note})),
        };
        audit::record(&mut tx, actor, entry, now).await?;
        tx.commit().await?;
        Ok(Some(balance))
    }

    /// Sum of every grant and the account's three buckets, for audits: grants
    /// must equal balance + held + used.
    #[tracing::instrument(skip_all)]
    pub async fn ledger_check(&self, account_id: &AccountId) -> Result<(i64, i64)> {
        let grants = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) AS s FROM ledger \
             WHERE account_id = $1 AND kind = 'grant'",
        )
        .bind(account_id)
        .fetch_one(&self.write)
        .await?;
        let acct = sqlx::query("SELECT balance + held + used AS t FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&self.write)
            .await?;
        Ok((grants.try_get("s")?, acct.try_get("t")?))
    }

    /// The kinds of the ledger entries of a task, oldest first (for audits and tests).
    #[tracing::instrument(skip_all)]
    pub async fn ledger_entries(&self, task_id: &TaskId) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT kind FROM ledger WHERE task_id = $1 ORDER BY id")
            .bind(task_id)
            .fetch_all(&self.write)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("kind")?)).collect()
    }
}
