//! Latency histograms and request counts (prometheus-client): HTTP requests by route and
//! status, Kafka requests by API, transform batches by transform, and records refused by
//! schema-validated topics. One process-wide set,
//! written by the listeners and partition tasks, read by `GET /metrics`.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/v1/topics/{topic}/records`), never the raw path.
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KafkaLabels {
    pub api: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransformLabels {
    pub transform: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub topic: String,
    /// `http` or `kafka`.
    pub protocol: String,
    /// `value` or `key`.
    pub part: String,
}

/// Buckets from `start` seconds, doubling `count` times.
#[derive(Clone)]
pub struct Buckets {
    start: f64,
    count: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, 2.0, self.count))
    }
}

pub struct Telemetry {
    registry: Registry,
    pub http: Family<HttpLabels, Histogram, Buckets>,
    pub kafka: Family<KafkaLabels, Histogram, Buckets>,
    pub batches: Family<TransformLabels, Histogram, Buckets>,
    pub schema_refusals: Family<RefusalLabels, Counter>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Telemetry")
    }
}

static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(|| {
    let mut registry = Registry::default();
    // 100 µs … 26 s (long polls wait up to 30 s).
    let requests = Buckets {
        start: 0.0001,
        count: 19,
    };
    let http = Family::new_with_constructor(requests.clone());
    registry.register(
        "sluice_http_request_duration_seconds",
        "HTTP requests by route and status, and how long they took",
        http.clone(),
    );
    let kafka = Family::new_with_constructor(requests);
    registry.register(
        "sluice_kafka_request_duration_seconds",
        "Kafka requests by API, and how long they took (fetches include their wait)",
        kafka.clone(),
    );
    // 20 µs … 5 s.
    let batches = Family::new_with_constructor(Buckets {
        start: 0.00002,
        count: 18,
    });
    registry.register(
        "sluice_transform_batch_duration_seconds",
        "Transform batches: plugin call plus durable appends of the outputs",
        batches.clone(),
    );
    let schema_refusals = Family::default();
    registry.register(
        "sluice_schema_refused_records",
        "Records refused by a schema-validated topic (not framed with a registered id of its subject, or not decoding against it)",
        schema_refusals.clone(),
    );
    Telemetry {
        registry,
        http,
        kafka,
        batches,
        schema_refusals,
    }
});

pub fn telemetry() -> &'static Telemetry {
    &TELEMETRY
}

impl Telemetry {
    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                method: method.to_string(),
                route: route.to_string(),
                status,
            })
            .observe(took.as_secs_f64());
    }

    pub fn kafka_request(&self, api: &str, took: Duration) {
        self.kafka
            .get_or_create(&KafkaLabels {
                api: api.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn transform_batch(&self, transform: &str, took: Duration) {
        self.batches
            .get_or_create(&TransformLabels {
                transform: transform.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn schema_refused(&self, topic: &str, protocol: &str, part: &str, records: u64) {
        self.schema_refusals
            .get_or_create(&RefusalLabels {
                topic: topic.to_string(),
                protocol: protocol.to_string(),
                part: part.to_string(),
            })
            .inc_by(records);
    }

    /// The Prometheus text of these families (without the OpenMetrics `# EOF`).
    pub fn encode(&self, out: &mut String) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut text, &self.registry).is_ok() {
            out.push_str(&text);
        }
    }
}
