//! Planning an object's run (its windows on the cursor), the fields it selects, and what
//! `--dry-run` prints: API, record count, expected calls and the budget left.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::checkpoint::ObjectState;
use super::routing::Route;
use super::slicing::{self, Plan};
use super::{checkpoint, now_seconds, soql, table_name, ExportError, ExportJob};
use crate::job::{ApiChoice, ExportMode, FormulaPolicy, ObjectSpec};
use crate::salesforce::describe::{self, ObjectDescribe};
use crate::window::Window;

impl ExportJob<'_> {
    /// Checks the window before touching anything: `--from/--to` select changed records, which
    /// a snapshot export does not do.
    pub(super) fn check_window(&self, window: &Window) -> Result<(), ExportError> {
        if self.spec.export.mode == ExportMode::Snapshot && !window.is_open() {
            return Err(ExportError::Usage(
                "--from/--to select changed records and apply to incremental exports only; a snapshot export reads everything".into(),
            ));
        }
        Ok(())
    }

    /// The fields exported: describe's, less formula fields when the job excludes them.
    pub(super) fn select(
        &self,
        spec: &ObjectSpec,
        describe: &ObjectDescribe,
        related: &BTreeMap<String, ObjectDescribe>,
    ) -> Result<describe::Selection, ExportError> {
        let mut selection = describe::select(describe, &spec.fields, related)?;
        if self.spec.export.formulas == FormulaPolicy::Exclude {
            let formulas: Vec<String> = describe
                .fields
                .iter()
                .filter(|f| f.calculated)
                .map(|f| f.name.clone())
                .collect();
            selection.columns.retain(|c| !formulas.contains(&c.path));
            for name in formulas {
                selection.skipped.push((
                    name,
                    "formula field (export.formulas = \"exclude\")".to_string(),
                ));
            }
        }
        Ok(selection)
    }

    /// The plan of one object's run: a snapshot (or an object without a cursor) is one
    /// unbounded read; an incremental export reads `(watermark, now]` cut into windows of
    /// `export.slice_days`, or everything in one unbounded read when it has no watermark or its
    /// formula refresh is due; a `--from/--to` re-export reads `[from, to)`.
    pub(super) async fn new_plan(
        &self,
        cursor: Option<&str>,
        object_state: &ObjectState,
        window: &Window,
        now: DateTime<Utc>,
    ) -> Result<Plan, ExportError> {
        let width = chrono::Duration::days(self.spec.export.slice_days.into());
        let whole = |until: DateTime<Utc>| slicing::cut(None, false, until, true, width);
        let (slices, until, full) = match (self.spec.export.mode, cursor) {
            (ExportMode::Snapshot, _) | (ExportMode::Incremental, None) => (whole(now), now, true),
            (ExportMode::Incremental, Some(_)) if window.is_open() => {
                let refresh_due = match self.spec.export.formulas {
                    FormulaPolicy::Refresh { days } => object_state
                        .formulas_refreshed
                        .is_none_or(|at| now - at >= chrono::Duration::days(days.into())),
                    _ => false,
                };
                match object_state.watermark.filter(|_| !refresh_due) {
                    Some(watermark) => (
                        slicing::cut(Some(watermark), false, now, true, width),
                        now,
                        false,
                    ),
                    // Everything: one unbounded read (Bulk API 2.0 chunks large objects
                    // itself); bounds are found only if a Bulk job fails on it.
                    None => (whole(now), now, true),
                }
            }
            (ExportMode::Incremental, Some(_)) => {
                let until = window.end.unwrap_or(now);
                (
                    slicing::cut(window.start, true, until, window.end.is_none(), width),
                    until,
                    false,
                )
            }
        };
        Ok(Plan {
            until,
            day: until.with_timezone(&self.job.timezone).date_naive(),
            full,
            slices,
        })
    }

    /// The oldest cursor value of the object (deleted records included), where an initial
    /// load's first window starts. One REST call; `None` when the object is empty.
    pub(super) async fn first_cursor(
        &self,
        spec: &ObjectSpec,
        cursor: &str,
    ) -> Result<Option<DateTime<Utc>>, ExportError> {
        let filter = spec
            .filter
            .as_deref()
            .map(|f| format!(" WHERE ({f})"))
            .unwrap_or_default();
        let text = format!(
            "SELECT {cursor} FROM {}{filter} ORDER BY {cursor} ASC LIMIT 1",
            spec.name
        );
        let page = self.client.query(&text, true).await?;
        Ok(page
            .records
            .first()
            .and_then(|r| r.get(cursor))
            .and_then(|v| v.as_str())
            .and_then(crate::salesforce::rest::parse_datetime)
            .map(|at| DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)))
    }

    /// What a run would do, per object: the API and why, the records it would read (`SELECT
    /// COUNT()`), the calls it expects and the budget left. Logs in and describes; writes nothing.
    pub async fn plan(&self, window: &Window) -> Result<Vec<String>, ExportError> {
        self.check_window(window)?;
        self.read_limits().await;
        let now = now_seconds();
        let mut lines = Vec::new();
        let mut expected_calls = 0u64;
        for spec in self.objects() {
            let (describe, related) = self.describe(spec).await?;
            let selection = self.select(spec, &describe, &related)?;
            let object_state = checkpoint::load(&self.lake, &self.job.name, &spec.name).await?;
            let route = Route::of(
                &spec.name,
                self.spec.salesforce.api,
                object_state.route.as_ref(),
            );
            let cursor = slicing::cursor_field(&describe);
            let incremental = self.spec.export.mode == ExportMode::Incremental;
            let plan = match object_state
                .plan
                .clone()
                .filter(|_| incremental && window.is_open())
            {
                Some(plan) => plan,
                None => self.new_plan(cursor, &object_state, window, now).await?,
            };
            let pending: Vec<&slicing::Slice> = plan.slices.iter().filter(|s| !s.done).collect();
            let span = plan.pending_span();
            let cursor_name = cursor.unwrap_or("SystemModstamp");
            let count = self
                .client
                .query(
                    &soql(
                        &spec.name,
                        "COUNT()",
                        spec.filter.as_deref(),
                        &span,
                        cursor_name,
                    ),
                    incremental,
                )
                .await?
                .total_size;
            let bulk = match &route {
                Route::RestOnly(_) | Route::AsConfigured(ApiChoice::Rest) => false,
                Route::AsConfigured(ApiChoice::Bulk) => true,
                Route::AsConfigured(ApiChoice::Auto) => {
                    count >= self.spec.salesforce.bulk_threshold
                }
            };
            let windows = pending.len().max(1) as u64;
            // Bulk: create, about two polls, one call per results page, delete; REST: one call
            // per 2,000 records (fewer per page with long text areas).
            let calls = if bulk {
                windows * 4 + count.div_ceil(self.spec.salesforce.page_size)
            } else {
                windows + count.div_ceil(2000)
            } + u64::from(self.spec.salesforce.api == ApiChoice::Auto && bulk)
                * windows;
            expected_calls += calls;
            let text = soql(
                &spec.name,
                &selection.soql_fields(),
                spec.filter.as_deref(),
                &span,
                cursor_name,
            );
            lines.push(format!(
                "{} -> {} ({} columns{}): via {} [{}], {count} records in {} window{}{}, about {calls} API calls: {text}",
                spec.name,
                table_name(&spec.name),
                selection.columns.len(),
                if selection.skipped.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", skipping {}",
                        selection
                            .skipped
                            .iter()
                            .map(|(f, _)| f.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
                if bulk { "Bulk API 2.0" } else { "REST" },
                route.describe(),
                windows,
                if windows == 1 { "" } else { "s" },
                if plan.slices.iter().any(|s| s.done) {
                    format!(" (resuming: {} of {} windows done)", plan.slices.len() - pending.len(), plan.slices.len())
                } else {
                    String::new()
                },
            ));
        }
        let budget = self.client.budget().expect("export clients have a budget");
        let made = self.client.counts().snapshot().1;
        lines.push(match (budget.remaining(made), budget.usage()) {
            (Some(left), (used, max)) => format!(
                "API budget: about {expected_calls} calls planned; {left} left for this run (org used {used} of {max} daily requests; salesforce.budget_run_percent = {}, budget_total_percent = {})",
                self.spec.salesforce.budget.run_percent, self.spec.salesforce.budget.total_percent
            ),
            (None, _) => format!("API budget: about {expected_calls} calls planned; the org's allowance is unknown (/limits not readable)"),
        });
        Ok(lines)
    }
}
