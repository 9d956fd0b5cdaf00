//! One exported object's state, `_etl/state/<job>/objects/<Object>.json`: its watermark, the
//! API routing it learnt, the plan of the run in progress with its finished slices, and when
//! its formula fields were last refreshed. Each object has its own state object, so objects
//! exported at once and shards on other machines never overwrite each other's state.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::routing::RouteMemo;
use super::slicing::Plan;
use crate::lake::{layout, Location};
use crate::state::{self, StateError};

/// What the lake remembers of one object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    /// Records with a cursor value up to this instant are in the lake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<DateTime<Utc>>,
    /// REST instead of Bulk, when Bulk refused the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteMemo>,
    /// The run in progress (a killed or stopped run leaves it; the next run finishes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// When the object was last read in full for its formula fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formulas_refreshed: Option<DateTime<Utc>>,
}

/// Reads `object`'s state; an object exported before per-object state existed takes its
/// watermark from the job's state.
pub async fn load(lake: &Location, job: &str, object: &str) -> Result<ObjectState, StateError> {
    let key = layout::object_state_key(job, object);
    match lake.get(&key).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            url: lake.url_of(&key),
            source,
        }),
        None => {
            let legacy = state::load_job_state(lake, job).await?;
            Ok(ObjectState {
                watermark: legacy.objects.get(object).copied(),
                ..ObjectState::default()
            })
        }
    }
}

/// Stores `object`'s state.
pub async fn save(
    lake: &Location,
    job: &str,
    object: &str,
    object_state: &ObjectState,
) -> Result<(), StateError> {
    state::write_json(lake, &layout::object_state_key(job, object), object_state).await
}
