//! OpenTelemetry traces: the process' tracer and the pipeline that exports
//! its spans over OTLP (HTTP/protobuf) off the request path.
//!
//! A finished span is handed to a bounded queue with `try_send`: a request
//! never waits for the exporter. One thread drains the queue in batches and
//! exports them; while the collector is down or slow the queue fills and new
//! spans are dropped and counted (`otel_spans_dropped_total`), never held.
//! The thread never waits on the queue itself (a blocked receiver makes
//! every send a futex wake and a context switch: measured at 20% of the
//! traced gateway's CPU): it sleeps for the export interval and is woken
//! early only once per full batch.
//! The standard `OTEL_*` variables apply (endpoint, service name, resource
//! attributes, sampler) unless the config's `tracing` section sets them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use super::settings::TracingSettings;
use crate::observability::metrics::metrics;

/// Most spans in one export request.
const MAX_BATCH: usize = 512;

struct Pipeline {
    tracer: SdkTracer,
    /// Keeps the tracer's processor alive; shut down at exit.
    provider: SdkTracerProvider,
}

static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// The process' tracer, when tracing is on.
pub fn tracer() -> Option<&'static SdkTracer> {
    PIPELINE.get().map(|p| &p.tracer)
}

/// Starts the export thread and the tracer. Fails when the exporter cannot
/// be built (a bad endpoint in the environment, for instance).
pub fn start(settings: &TracingSettings) -> Result<(), String> {
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(settings.export_timeout);
    if let Some(endpoint) = &settings.endpoint {
        builder = builder.with_endpoint(endpoint.clone());
    }
    let mut exporter = builder.build().map_err(|e| e.to_string())?;
    let mut resource = Resource::builder();
    if let Some(name) = &settings.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let resource = resource.build();
    exporter.set_resource(&resource);

    let (sender, queue) = mpsc::sync_channel(settings.queue_size);
    let queued = Arc::new(AtomicUsize::new(0));
    let interval = settings.export_interval;
    let counted = queued.clone();
    let thread = std::thread::Builder::new()
        .name("otel-export".into())
        .spawn(move || export_loop(exporter, queue, &counted, interval))
        .map_err(|e| format!("cannot start the export thread: {e}"))?
        .thread()
        .clone();

    let mut provider = SdkTracerProvider::builder()
        .with_span_processor(ExportQueue {
            sender,
            queued,
            thread,
        })
        .with_resource(resource);
    if let Some(ratio) = settings.sample_ratio {
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    let provider = provider.build();
    let tracer = provider.tracer("ai-api-gateway");
    let _ = PIPELINE.set(Pipeline { tracer, provider });
    Ok(())
}

/// Exports what is queued; waits at most `timeout`. At exit.
pub fn flush(timeout: Duration) -> bool {
    PIPELINE
        .get()
        .is_none_or(|p| p.provider.shutdown_with_timeout(timeout).is_ok())
}

enum Message {
    Span(Box<SpanData>),
    /// Export everything before this, then answer.
    Flush(mpsc::Sender<()>),
}

/// The tracer's span processor: finished spans go to the export thread.
#[derive(Debug)]
struct ExportQueue {
    sender: SyncSender<Message>,
    /// Spans in the queue: a full batch wakes the export thread.
    queued: Arc<AtomicUsize>,
    thread: Thread,
}

impl SpanProcessor for ExportQueue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        match self.sender.try_send(Message::Span(Box::new(span))) {
            Ok(()) => {
                if self.queued.fetch_add(1, Ordering::Relaxed) + 1 == MAX_BATCH {
                    self.thread.unpark();
                }
            }
            Err(TrySendError::Full(_)) => dropped("queue_full", 1),
            Err(TrySendError::Disconnected(_)) => dropped("export_stopped", 1),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.shutdown_with_timeout(Duration::from_secs(5))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let (done, finished) = mpsc::channel();
        let deadline = Instant::now() + timeout;
        // The queue may be full: keep trying until the deadline.
        let mut message = Message::Flush(done);
        loop {
            match self.sender.try_send(message) {
                Ok(()) => {
                    self.thread.unpark();
                    break;
                }
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    message = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return Err(OTelSdkError::Timeout(timeout)),
            }
        }
        finished
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| OTelSdkError::Timeout(timeout))
    }
}

fn dropped(reason: &str, n: u64) {
    metrics()
        .otel_spans_dropped
        .with_label_values(&[reason])
        .inc_by(n);
}

/// The export thread: batches of up to `MAX_BATCH` spans, sent when full,
/// every `interval`, and on a flush.
fn export_loop(
    exporter: opentelemetry_otlp::SpanExporter,
    queue: Receiver<Message>,
    queued: &AtomicUsize,
    interval: Duration,
) {
    // The OTLP client is async: a runtime of this thread's own, so an export
    // never runs on a worker's.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            log::error!("traces are not exported: cannot start their runtime: {e}");
            return;
        }
    };
    let mut batch: Vec<SpanData> = Vec::with_capacity(MAX_BATCH);
    let mut last_warning: Option<Instant> = None;
    let mut export = |batch: &mut Vec<SpanData>| {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::replace(batch, Vec::with_capacity(MAX_BATCH));
        let n = spans.len() as u64;
        match runtime.block_on(exporter.export(spans)) {
            Ok(()) => metrics().otel_spans_exported.inc_by(n),
            Err(e) => {
                dropped("export_failed", n);
                // A collector that is down fails every batch: say so once a
                // minute, below error level.
                if last_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    log::warn!("trace export failed, {n} spans dropped: {e}");
                    last_warning = Some(Instant::now());
                }
            }
        }
    };
    loop {
        // Woken early by a full batch or a flush; else once an interval.
        std::thread::park_timeout(interval);
        loop {
            match queue.try_recv() {
                Ok(Message::Span(span)) => {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    batch.push(*span);
                    if batch.len() >= MAX_BATCH {
                        export(&mut batch);
                    }
                }
                Ok(Message::Flush(done)) => {
                    export(&mut batch);
                    let _ = done.send(());
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    export(&mut batch);
                    return;
                }
            }
        }
        export(&mut batch);
    }
}
