//! Server settings: the request limits and the batcher's knobs, with defaults sized for a CPU
//! serving ViT-B/32.

use std::time::Duration;

/// Limits that keep one request (or many) from exhausting the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (JSON, multipart, all images together).
    pub max_body_bytes: usize,
    /// Largest decoded image, in pixels (width × height); checked before decoding the pixels.
    pub max_image_pixels: u64,
    /// Most images (or texts, for embeddings) in one request.
    pub max_inputs: usize,
    /// Most candidate labels in one request.
    pub max_labels: usize,
    /// Longest label, in characters.
    pub max_label_chars: usize,
    /// Most custom templates in one request.
    pub max_templates: usize,
    /// Most texts one request may send through the text tower: labels × templates. Bounds one
    /// request's model time (ImageNet's 1000 classes × 80 templates would be 80,000 texts).
    pub max_texts: usize,
    /// Longest a request may take, queueing included, before it gets a 504.
    pub request_timeout: Duration,
    /// Longest a connection may take to send a request's headers, which is also how long it may
    /// stay idle before or between requests; then it is closed.
    pub header_timeout: Duration,
    /// Most connections open at once; more wait in the listen backlog (see [`crate::serve`]).
    pub max_connections: usize,
    /// Most POST requests handled at once (bodies held in memory); more get 503 `overloaded`.
    /// Never more than [`Self::in_flight_capacity`]: requests waiting for the model must leave
    /// connections free for probes and for the 503s that shed load.
    pub max_in_flight: usize,
    /// Most images decoded at once (decoded pixels are the largest buffers); the rest wait.
    pub max_concurrent_decodes: usize,
}

impl Limits {
    /// The in-flight limit in force: [`Self::max_in_flight`], lowered so that at least an
    /// eighth of [`Self::max_connections`] (at least one) stays free of in-flight requests.
    /// Otherwise, with the connection cap at or under the in-flight limit (an open-file limit of
    /// 256 caps connections at 192), requests stuck behind a slow model hold every connection
    /// and `/healthz` waits in the listen backlog until one finishes.
    pub fn in_flight_capacity(&self) -> usize {
        let reserve = (self.max_connections / 8).max(1);
        self.max_in_flight
            .min(self.max_connections.saturating_sub(reserve))
            .max(1)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_image_pixels: 40_000_000,
            max_inputs: 32,
            max_labels: 1000,
            max_label_chars: 300,
            max_templates: 100,
            max_texts: 10_000,
            request_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_in_flight: 512,
            max_concurrent_decodes: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// How the batcher groups work into forward passes.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most images in one `encode_image` forward pass.
    pub max_batch: usize,
    /// Most texts in one `encode_text` forward pass.
    pub max_text_batch: usize,
    /// How long the first request of a batch waits for company.
    pub max_wait: Duration,
    /// Most requests waiting for the model; more get 503 `overloaded`.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch: 32,
            max_text_batch: 256,
            max_wait: Duration::from_millis(5),
            queue_capacity: 256,
        }
    }
}

/// Everything [`crate::AppState`] needs besides the model.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Request limits.
    pub limits: Limits,
    /// Batcher settings.
    pub batch: BatchConfig,
    /// Entries in the label-embedding LRU cache (one per label and template set).
    pub label_cache_capacity: usize,
    /// The model as it was named (name, Hub id or path); responses, `/readyz` and the page show
    /// a local path as its file name only.
    pub model_name: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            limits: Limits::default(),
            batch: BatchConfig::default(),
            label_cache_capacity: 16384,
            model_name: "model".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_requests_leave_an_eighth_of_the_connections_free() {
        let limits = |max_in_flight, max_connections| Limits {
            max_in_flight,
            max_connections,
            ..Limits::default()
        };
        assert_eq!(Limits::default().in_flight_capacity(), 512);
        assert_eq!(limits(512, 192).in_flight_capacity(), 168);
        assert_eq!(limits(4, 4).in_flight_capacity(), 3);
        assert_eq!(limits(1, 1).in_flight_capacity(), 1);
    }
}
