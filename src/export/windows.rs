//! Reading an object's windows in cursor order: each into its own history file, with the
//! routing and halving decisions that Salesforce's refusals and failed Bulk jobs force, and a
//! checkpoint after every finished window.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use chrono::{DateTime, Utc};

use super::checkpoint::ObjectState;
use super::routing::{self, Route, RouteMemo};
use super::slicing::{self, Plan};
use super::stream::Sink;
use super::writer::PartWriter;
use super::{history_key, soql, Api, ExportError, ExportJob};
use crate::job::ObjectSpec;
use crate::observe::progress::Progress;
use crate::salesforce::describe::Column;
use crate::salesforce::SalesforceError;

/// What one object's run reads, decided before its first window.
pub(super) struct ObjectRun<'a> {
    /// The object.
    pub spec: &'a ObjectSpec,
    /// Its history table.
    pub table: &'a str,
    /// The table's schema.
    pub schema: &'a SchemaRef,
    /// The columns selected.
    pub columns: Arc<Vec<Column>>,
    /// The SOQL SELECT list.
    pub fields: String,
    /// The cursor field, if the object has one.
    pub cursor: Option<&'static str>,
    /// Changed records (`queryAll`) rather than a snapshot.
    pub incremental: bool,
    /// Whether the plan is checkpointed (a scheduled incremental run).
    pub persist: bool,
    /// The run's start.
    pub now: DateTime<Utc>,
}

impl ObjectRun<'_> {
    fn cursor_name(&self) -> &'static str {
        self.cursor.unwrap_or("SystemModstamp")
    }
}

/// What the windows gave.
pub(super) struct WindowsRead {
    /// History files written by this run, by key (kept on disk for the `_latest` merge).
    pub written: BTreeMap<String, PartWriter>,
    /// Records flagged deleted.
    pub deleted: u64,
    /// REST `totalSize` of the windows REST read.
    pub rest_total: u64,
    /// The API of the last window.
    pub api: Api,
}

impl ExportJob<'_> {
    /// Reads every window of `plan` not yet done, in order; a window Bulk refuses switches the
    /// object to REST (remembered in `object_state`), one a Bulk job fails on is halved (or read
    /// over REST below the floor), and each finished window is checkpointed.
    pub(super) async fn read_windows(
        &self,
        run: &ObjectRun<'_>,
        plan: &mut Plan,
        object_state: &mut ObjectState,
        route: &mut Route,
        progress: &Progress,
    ) -> Result<WindowsRead, ExportError> {
        let floor = chrono::Duration::minutes(self.spec.export.slice_floor_minutes.into());
        // History files of this run, kept on disk for the latest merge.
        let mut written: BTreeMap<String, PartWriter> = BTreeMap::new();
        let (mut deleted, mut rest_total) = (0u64, 0u64);
        let mut api = Api::Rest;
        while let Some(index) = plan.next_pending() {
            let slice = plan.slices[index].clone();
            let text = soql(
                &run.spec.name,
                &run.fields,
                run.spec.filter.as_deref(),
                &slice.bounds,
                run.cursor_name(),
            );
            tracing::debug!(object = %run.spec.name, soql = %text, "query");
            let mut history = PartWriter::start(run.schema.clone())?;
            let outcome = self
                .stream(
                    &run.spec.name,
                    &text,
                    run.incremental,
                    route,
                    slice.rest,
                    &run.columns,
                    run.schema,
                    &mut Sink {
                        writer: &mut history,
                        progress,
                    },
                )
                .await;
            let (slice_api, streamed) = match outcome {
                Ok(done) => done,
                Err(ExportError::Salesforce(e)) if routing::bulk_refusal(&e).is_some() => {
                    let reason = routing::bulk_refusal(&e).expect("just matched");
                    tracing::warn!(object = %run.spec.name, reason = %reason, "Bulk API refuses this object: reading it over REST from now on");
                    *route = Route::RestOnly(reason.clone());
                    object_state.route = Some(RouteMemo {
                        api: "rest".into(),
                        reason,
                        decided: run.now,
                    });
                    self.save_state(&run.spec.name, object_state).await?;
                    continue;
                }
                Err(ExportError::Salesforce(SalesforceError::JobFailed { message, .. })) => {
                    let first = match (slice.bounds.from, run.cursor) {
                        (None, Some(cursor)) if run.incremental => {
                            self.first_cursor(run.spec, cursor).await?
                        }
                        _ => None,
                    };
                    if let Some(first) = first {
                        tracing::warn!(object = %run.spec.name, error = %message, "Bulk job failed on the whole object: cutting it into windows from its first record");
                        let width = chrono::Duration::days(self.spec.export.slice_days.into());
                        let windows = slicing::cut(
                            Some(first),
                            true,
                            plan.until,
                            slice.bounds.to_inclusive,
                            width,
                        );
                        plan.slices.splice(index..=index, windows);
                    } else if plan.split(index, floor) {
                        tracing::warn!(object = %run.spec.name, error = %message, from = ?slice.bounds.from, to = ?slice.bounds.to, "Bulk job failed: halving its window");
                    } else {
                        tracing::warn!(object = %run.spec.name, error = %message, from = ?slice.bounds.from, to = ?slice.bounds.to, "Bulk job failed on a window too narrow to halve: reading it over REST");
                        plan.slices[index].rest = true;
                    }
                    if run.persist {
                        object_state.plan = Some(plan.clone());
                        self.save_state(&run.spec.name, object_state).await?;
                        crate::fault_point!("export-after-replan");
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            let (rows, file) = history.finish().await?;
            debug_assert_eq!(rows, streamed.rows);
            if rows > 0 || !run.incremental {
                let part = if run.incremental {
                    slice.part_name()
                } else {
                    "part-00000".to_string()
                };
                let key = history_key(run.table, plan.day, &part);
                self.lake.put_file(&key, &file).await?;
                crate::fault_point!("export-after-history-file");
                written.insert(key, history);
            }
            api = slice_api;
            deleted += streamed.deleted;
            rest_total += streamed.rest_total;
            let done = &mut plan.slices[index];
            done.done = true;
            done.rows = rows;
            done.api = Some(slice_api.name().to_string());
            if run.persist {
                object_state.plan = Some(plan.clone());
                self.save_state(&run.spec.name, object_state).await?;
                crate::fault_point!("export-after-window-checkpoint");
            }
        }
        Ok(WindowsRead {
            written,
            deleted,
            rest_total,
            api,
        })
    }
}
