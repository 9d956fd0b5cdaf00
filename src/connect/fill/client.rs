//! The Connect API calls a fill makes: the instance's queues or agents (id → report name), and
//! GetMetricDataV2 pages. Throttling (`ThrottlingException`, HTTP 429) is retried by the SDK's
//! standard retry mode with exponential backoff; requests are also paced so one run stays under
//! its share of the account's request rate.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::types::{
    FilterV2, IntervalDetails, IntervalPeriod, MetricV2, QueueType, ThresholdV2,
};
use aws_sdk_connect::Client;
use aws_smithy_types::DateTime as SdkTime;

use super::mapping::ApiMetric;
use super::FillError;
use crate::job::{FillSettings, ReportKind};

/// Attempts per call (the first and four retries), with exponential backoff from one second:
/// a throttle burst of up to about 15 seconds is absorbed.
const MAX_ATTEMPTS: u32 = 5;
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);

/// One value of one metric for one queue or agent and interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// Queue or agent id, as the API names it in `Dimensions`.
    pub id: String,
    /// Interval start, UTC epoch milliseconds.
    pub start: i64,
    /// Interval end, UTC epoch milliseconds.
    pub end: i64,
    /// Values by metric index in the request's metric list (`None`: null in the answer).
    pub values: Vec<(usize, Option<f64>)>,
}

/// A Connect client for one instance.
pub struct ConnectApi {
    client: Client,
    settings: FillSettings,
    pace: tokio::sync::Mutex<tokio::time::Interval>,
    requests: std::sync::atomic::AtomicU64,
}

impl ConnectApi {
    /// A client for the instance of `settings` (credentials from the usual chain; the endpoint
    /// from `AWS_ENDPOINT_URL_CONNECT` when set).
    pub async fn new(settings: &FillSettings) -> Self {
        let config = crate::aws::sdk_config(Some(&settings.region)).await;
        let connect = aws_sdk_connect::config::Builder::from(&config)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF),
            )
            .build();
        let mut pace =
            tokio::time::interval(Duration::from_secs_f64(1.0 / settings.requests_per_second));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ConnectApi {
            client: Client::from_conf(connect),
            settings: settings.clone(),
            pace: tokio::sync::Mutex::new(pace),
            requests: Default::default(),
        }
    }

    /// Requests made so far (pages included).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn paced(&self) {
        self.pace.lock().await.tick().await;
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The instance's queues (report name by id) or agents (login by id).
    pub async fn entities(&self, report: ReportKind) -> Result<HashMap<String, String>, FillError> {
        let mut names = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            self.paced().await;
            let page_token = token.take();
            match report {
                ReportKind::Queue => {
                    let page = self
                        .client
                        .list_queues()
                        .instance_id(&self.settings.instance_id)
                        .queue_types(QueueType::Standard)
                        .max_results(1000)
                        .set_next_token(page_token)
                        .send()
                        .await
                        .map_err(|e| FillError::call("ListQueues", e))?;
                    for q in page.queue_summary_list() {
                        if let (Some(id), Some(name)) = (q.id(), q.name()) {
                            names.insert(id.to_string(), name.to_string());
                        }
                    }
                    token = page.next_token().map(str::to_string);
                }
                ReportKind::Agent => {
                    let page = self
                        .client
                        .list_users()
                        .instance_id(&self.settings.instance_id)
                        .max_results(1000)
                        .set_next_token(page_token)
                        .send()
                        .await
                        .map_err(|e| FillError::call("ListUsers", e))?;
                    for u in page.user_summary_list() {
                        if let (Some(id), Some(name)) = (u.id(), u.username()) {
                            names.insert(id.to_string(), name.to_string());
                        }
                    }
                    token = page.next_token().map(str::to_string);
                }
            }
            if token.is_none() {
                return Ok(names);
            }
        }
    }

    /// Every page of one GetMetricDataV2 request: `metrics` for `ids` (queues or agents, by
    /// `report`), grouped the same way, at `interval_minutes`, over `[start, end)`.
    pub async fn metric_data(
        &self,
        report: ReportKind,
        ids: &[String],
        metrics: &[&ApiMetric],
        interval_minutes: u32,
        start: i64,
        end: i64,
    ) -> Result<Vec<Answer>, FillError> {
        let key = group_key(report);
        let period = match interval_minutes {
            15 => IntervalPeriod::FifteenMin,
            60 => IntervalPeriod::Hour,
            _ => IntervalPeriod::ThirtyMin,
        };
        let filter = FilterV2::builder()
            .filter_key(key)
            .set_filter_values(Some(ids.to_vec()))
            .build();
        let requested: Vec<MetricV2> = metrics.iter().map(|m| metric_v2(m)).collect();
        let mut answers = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.paced().await;
            let page = self
                .client
                .get_metric_data_v2()
                .resource_arn(&self.settings.instance_arn)
                .start_time(SdkTime::from_millis(start))
                .end_time(SdkTime::from_millis(end))
                .interval(
                    IntervalDetails::builder()
                        .interval_period(period.clone())
                        .time_zone("UTC")
                        .build(),
                )
                .filters(filter.clone())
                .groupings(key)
                .set_metrics(Some(requested.clone()))
                .max_results(super::plan::PAGE_SIZE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| FillError::call("GetMetricDataV2", e))?;
            for result in page.metric_results() {
                let Some(id) = result.dimensions().and_then(|d| d.get(key)) else {
                    continue;
                };
                let Some(interval) = result.metric_interval() else {
                    continue;
                };
                let (Some(from), Some(to)) = (interval.start_time(), interval.end_time()) else {
                    continue;
                };
                let values = result
                    .collections()
                    .iter()
                    .filter_map(|c| {
                        let metric = c.metric()?;
                        let index = metrics.iter().position(|m| same_metric(m, metric))?;
                        Some((index, c.value()))
                    })
                    .collect();
                answers.push(Answer {
                    id: id.clone(),
                    start: millis(from),
                    end: millis(to),
                    values,
                });
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(answers);
            }
        }
    }
}

/// The grouping and filter key of a report: `QUEUE` or `AGENT`.
pub fn group_key(report: ReportKind) -> &'static str {
    match report {
        ReportKind::Queue => "QUEUE",
        ReportKind::Agent => "AGENT",
    }
}

fn metric_v2(metric: &ApiMetric) -> MetricV2 {
    let mut builder = MetricV2::builder().name(&metric.api);
    if let Some(t) = &metric.threshold {
        builder = builder.threshold(
            ThresholdV2::builder()
                .comparison(&t.comparison)
                .threshold_value(f64::from(t.seconds))
                .build(),
        );
    }
    builder.build()
}

/// Whether an answered metric is the one `metric` asked for (name and threshold).
fn same_metric(metric: &ApiMetric, answered: &MetricV2) -> bool {
    if answered.name() != Some(metric.api.as_str()) {
        return false;
    }
    let threshold = answered.threshold().first();
    match (&metric.threshold, threshold) {
        (None, None) => true,
        (Some(want), Some(got)) => {
            got.comparison() == Some(want.comparison.as_str())
                && got.threshold_value() == Some(f64::from(want.seconds))
        }
        _ => false,
    }
}

fn millis(t: &SdkTime) -> i64 {
    t.to_millis().unwrap_or_default()
}
