//! Prometheus metrics, kept in plain counters and rendered by hand in the text exposition format
//! (version 0.0.4): requests, a latency histogram, batch sizes, queue depth and cache hits.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LATENCY_BOUNDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BATCH_BOUNDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A fixed-bucket histogram.
#[derive(Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (bound, n) in self.bounds.iter().zip(&self.counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The server's metrics. Cheap to update from any thread.
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    image_batches: Mutex<Histogram>,
    text_batches: Mutex<Histogram>,
    /// Requests waiting for the model; shared with the batcher.
    pub queue_depth: Arc<AtomicUsize>,
    /// Connections open now; kept by the accept loop.
    pub connections_open: Arc<AtomicUsize>,
    label_cache_hits: AtomicU64,
    label_cache_misses: AtomicU64,
    images: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            latency: Mutex::default(),
            image_batches: Mutex::new(Histogram::new(BATCH_BOUNDS)),
            text_batches: Mutex::new(Histogram::new(BATCH_BOUNDS)),
            queue_depth: Arc::default(),
            connections_open: Arc::default(),
            label_cache_hits: AtomicU64::new(0),
            label_cache_misses: AtomicU64::new(0),
            images: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Escapes a label value as the exposition format requires.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records one finished HTTP request.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        *lock(&self.requests)
            .entry((route.to_string(), status))
            .or_default() += 1;
        lock(&self.latency)
            .entry(route.to_string())
            .or_insert_with(|| Histogram::new(LATENCY_BOUNDS))
            .observe(elapsed.as_secs_f64());
    }

    /// Records one `encode_image` forward pass of `n` images.
    pub fn observe_image_batch(&self, n: usize) {
        lock(&self.image_batches).observe(n as f64);
        self.images.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records one `encode_text` forward pass of `n` texts.
    pub fn observe_text_batch(&self, n: usize) {
        lock(&self.text_batches).observe(n as f64);
    }

    /// Records label-cache lookups.
    pub fn observe_label_cache(&self, hits: usize, misses: usize) {
        self.label_cache_hits
            .fetch_add(hits as u64, Ordering::Relaxed);
        self.label_cache_misses
            .fetch_add(misses as u64, Ordering::Relaxed);
    }

    /// Label-cache hits so far.
    pub fn label_cache_hits(&self) -> u64 {
        self.label_cache_hits.load(Ordering::Relaxed)
    }

    /// Number of image forward passes and images in them so far.
    pub fn image_batches(&self) -> (u64, u64) {
        let h = lock(&self.image_batches);
        (h.count, h.sum as u64)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP zeroclip_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE zeroclip_http_requests_total counter\n");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "zeroclip_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str(
            "# HELP zeroclip_http_request_duration_seconds HTTP request latency by route.\n",
        );
        out.push_str("# TYPE zeroclip_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.latency).iter() {
            let labels = format!("route=\"{}\"", escape(route));
            h.render(&mut out, "zeroclip_http_request_duration_seconds", &labels);
        }
        out.push_str("# HELP zeroclip_image_batch_size Images per encode_image forward pass.\n");
        out.push_str("# TYPE zeroclip_image_batch_size histogram\n");
        lock(&self.image_batches).render(&mut out, "zeroclip_image_batch_size", "");
        out.push_str("# HELP zeroclip_text_batch_size Texts per encode_text forward pass.\n");
        out.push_str("# TYPE zeroclip_text_batch_size histogram\n");
        lock(&self.text_batches).render(&mut out, "zeroclip_text_batch_size", "");
        let gauges_and_counters = [
            (
                "zeroclip_queue_depth",
                "gauge",
                "Requests waiting for the model.",
                self.queue_depth.load(Ordering::Relaxed) as u64,
            ),
            (
                "zeroclip_connections_open",
                "gauge",
                "HTTP connections open.",
                self.connections_open.load(Ordering::Relaxed) as u64,
            ),
            (
                "zeroclip_label_cache_hits_total",
                "counter",
                "Label embeddings served from the cache.",
                self.label_cache_hits.load(Ordering::Relaxed),
            ),
            (
                "zeroclip_label_cache_misses_total",
                "counter",
                "Label embeddings computed by the text tower.",
                self.label_cache_misses.load(Ordering::Relaxed),
            ),
            (
                "zeroclip_images_encoded_total",
                "counter",
                "Images through the image tower.",
                self.images.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in gauges_and_counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_image_batch(1);
        m.observe_image_batch(3);
        m.observe_image_batch(3);
        let text = m.render();
        assert!(text.contains("zeroclip_image_batch_size_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("zeroclip_image_batch_size_bucket{le=\"2\"} 1\n"));
        assert!(text.contains("zeroclip_image_batch_size_bucket{le=\"4\"} 3\n"));
        assert!(text.contains("zeroclip_image_batch_size_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("zeroclip_image_batch_size_sum 7\n"));
        assert_eq!(m.image_batches(), (3, 7));
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = Metrics::default();
        m.observe_request("/v1/classify", 200, Duration::from_millis(3));
        m.observe_request("/v1/classify", 200, Duration::from_millis(30));
        m.observe_request("/v1/classify", 422, Duration::from_millis(1));
        let text = m.render();
        assert!(text
            .contains("zeroclip_http_requests_total{route=\"/v1/classify\",status=\"200\"} 2\n"));
        assert!(text
            .contains("zeroclip_http_requests_total{route=\"/v1/classify\",status=\"422\"} 1\n"));
        assert!(text.contains(
            "zeroclip_http_request_duration_seconds_bucket{route=\"/v1/classify\",le=\"0.005\"} 2\n"
        ));
        assert!(text
            .contains("zeroclip_http_request_duration_seconds_count{route=\"/v1/classify\"} 3\n"));
    }
}
