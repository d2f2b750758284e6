//! The proxy's metrics: their names (part of the interface: dashboards depend on them), their
//! help texts, and the Prometheus recorder behind `/metrics`.
//!
//! Recording goes through the `metrics` facade at the point where each fact is known (the trace
//! layer for requests, the token client for logins, ...). Without an installed recorder, as in
//! unit tests, recording is a no-op.

use std::{
    fmt,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub(crate) const REQUESTS: &str = "sfproxy_requests_total";
pub(crate) const REQUEST_DURATION: &str = "sfproxy_request_duration_seconds";
pub(crate) const UPSTREAM_DURATION: &str = "sfproxy_upstream_duration_seconds";
pub(crate) const TOKEN_REQUESTS: &str = "sfproxy_token_requests_total";
pub(crate) const SESSION_CACHE: &str = "sfproxy_session_cache_total";
pub(crate) const SESSION_REPLAYS: &str = "sfproxy_session_replays_total";
pub(crate) const LEGACY_LOGINS: &str = "sfproxy_legacy_logins_total";
pub(crate) const API_USAGE: &str = "sfproxy_salesforce_api_usage";
pub(crate) const API_LIMIT: &str = "sfproxy_salesforce_api_limit";
pub(crate) const CONFIG_RELOADS: &str = "sfproxy_config_reloads_total";
pub(crate) const REFUSALS: &str = "sfproxy_refusals_total";
pub(crate) const CONNECTIONS_OPEN: &str = "sfproxy_connections_open";
pub(crate) const REQUESTS_IN_FLIGHT: &str = "sfproxy_requests_in_flight";
pub(crate) const SHARED_TIER_UP: &str = "sfproxy_shared_tier_up";

/// The `route` label of requests refused before a route was chosen.
pub(crate) const NO_ROUTE: &str = "none";

/// Buckets for request and upstream latency, in seconds: Salesforce calls take from a few
/// milliseconds (cached limits) to minutes (large queries, Bulk uploads).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the process-wide Prometheus recorder and describes every metric.
pub(crate) fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| format!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    describe_counter!(REQUESTS, "Requests answered, by route and HTTP status.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time from request to response head, by route."
    );
    describe_histogram!(
        UPSTREAM_DURATION,
        Unit::Seconds,
        "Time Salesforce took to answer, by org."
    );
    describe_counter!(
        TOKEN_REQUESTS,
        "JWT bearer token requests, by org and outcome (ok, rejected, unavailable)."
    );
    describe_counter!(
        SESSION_CACHE,
        "Session lookups, by org and result (hit; miss: a login here; shared: another replica's session)."
    );
    describe_counter!(
        SESSION_REPLAYS,
        "Requests replayed once after Salesforce reported an expired session, by route."
    );
    describe_counter!(
        LEGACY_LOGINS,
        "Legacy logins answered by sfproxy, by grant (soap, password, client_credentials) and \
         outcome (ok, invalid, limited, failed)."
    );
    describe_gauge!(
        SHARED_TIER_UP,
        "1 while the shared tier ([shared], Redis) answers; 0 while this process carries on alone."
    );
    describe_gauge!(
        API_USAGE,
        "Daily API requests used, from the latest Sforce-Limit-Info, by org."
    );
    describe_gauge!(
        API_LIMIT,
        "Daily API request limit, from the latest Sforce-Limit-Info, by org."
    );
    describe_counter!(
        CONFIG_RELOADS,
        "Config reloads on SIGHUP, by result (ok, error)."
    );
    describe_counter!(
        REFUSALS,
        "Requests the proxy answered itself, by errorCode."
    );
    describe_gauge!(
        CONNECTIONS_OPEN,
        "Caller connections open on the proxy port."
    );
    describe_gauge!(
        REQUESTS_IN_FLIGHT,
        "Requests being served, from arrival until their answer is sent or dropped."
    );
    Ok(handle)
}

/// The metric handles of one route and its org, attached to the route by the stack (the config is
/// plain data) and handed on with the route a request matched: trace records the request, the
/// session cache the lookup, upstream the answer, none of them looking a handle up.
#[derive(Debug)]
pub(crate) struct RouteHandles {
    pub(crate) route: RouteMetrics,
    /// Shared by every route of the org.
    pub(crate) org: Arc<OrgMetrics>,
}

/// The metrics of one org, registered on first use. The recorder is installed after the config
/// is loaded, so handles cannot be made with the org; once made, recording through them skips
/// the registry lookup and label strings a `counter!(name, labels)` costs on every request.
pub(crate) struct OrgMetrics {
    org: String,
    handles: OnceLock<OrgHandles>,
}

pub(crate) struct OrgHandles {
    pub(crate) upstream_duration: Histogram,
    pub(crate) api_usage: Gauge,
    pub(crate) api_limit: Gauge,
    pub(crate) session_hit: Counter,
    pub(crate) session_miss: Counter,
    pub(crate) session_shared: Counter,
}

impl OrgMetrics {
    /// The metrics labelled `org`.
    pub(crate) fn new(org: &str) -> Self {
        Self {
            org: org.to_owned(),
            handles: OnceLock::new(),
        }
    }

    pub(crate) fn get(&self) -> &OrgHandles {
        self.handles.get_or_init(|| {
            let org = &self.org;
            OrgHandles {
                upstream_duration: histogram!(UPSTREAM_DURATION, "org" => org.clone()),
                api_usage: gauge!(API_USAGE, "org" => org.clone()),
                api_limit: gauge!(API_LIMIT, "org" => org.clone()),
                session_hit: counter!(SESSION_CACHE, "org" => org.clone(), "result" => "hit"),
                session_miss: counter!(SESSION_CACHE, "org" => org.clone(), "result" => "miss"),
                session_shared: counter!(SESSION_CACHE, "org" => org.clone(), "result" => "shared"),
            }
        })
    }
}

impl fmt::Debug for OrgMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgMetrics({:?})", self.org)
    }
}

/// The request metrics of one route (see [`OrgMetrics`]): its latency histogram, and a counter
/// per status it has answered with.
pub(crate) struct RouteMetrics {
    route: Arc<str>,
    duration: OnceLock<Histogram>,
    by_status: Mutex<Vec<(u16, Counter)>>,
}

impl RouteMetrics {
    /// The metrics labelled `route`.
    pub(crate) fn new(route: Arc<str>) -> Self {
        Self {
            route,
            duration: OnceLock::new(),
            by_status: Mutex::default(),
        }
    }

    pub(crate) fn record(&self, status: u16, seconds: f64) {
        let route = &*self.route;
        self.duration
            .get_or_init(|| histogram!(REQUEST_DURATION, "route" => route.to_owned()))
            .record(seconds);
        let mut by_status = self
            .by_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match by_status.iter().find(|(s, _)| *s == status) {
            Some((_, counter)) => counter.increment(1),
            None => {
                let counter = requests(route, status);
                counter.increment(1);
                by_status.push((status, counter));
            }
        }
    }
}

impl fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RouteMetrics({:?})", self.route)
    }
}

/// `sfproxy_requests_total` of a route (or [`NO_ROUTE`]) and status.
pub(crate) fn requests(route: &str, status: u16) -> Counter {
    counter!(REQUESTS, "route" => route.to_owned(), "status" => status.to_string())
}

/// `sfproxy_requests_in_flight`, registered once.
pub(crate) fn requests_in_flight() -> &'static Gauge {
    static IN_FLIGHT: OnceLock<Gauge> = OnceLock::new();
    IN_FLIGHT.get_or_init(|| gauge!(REQUESTS_IN_FLIGHT))
}
