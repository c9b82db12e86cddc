//! Chat traffic from many threads against several gateways, tallied: what
//! the limit tests that kill Redis or fail it over send while it happens.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Gateway;

/// A chat for `model`.
pub fn chat_body(model: &str) -> String {
    format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#)
}

/// A limit held across replicas: at most 1% over it (a window boundary
/// seen slightly apart by two clocks), and at least `at_least` of it (the
/// replicas did not starve each other).
pub fn assert_admitted(what: &str, admitted: usize, limit: u64, at_least: f64) {
    assert!(
        admitted as f64 <= limit as f64 * 1.01,
        "{what}: {admitted} admitted, limit {limit}"
    );
    assert!(
        admitted as f64 >= limit as f64 * at_least,
        "{what}: only {admitted} admitted, limit {limit}"
    );
}

/// What a flood saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: AtomicUsize,
    pub refused: AtomicUsize,
    /// Answers other than 200 and 429, and transport errors.
    pub other: Mutex<Vec<String>>,
    pub slowest_ms: AtomicUsize,
    /// Admitted requests by the second (Unix time) their answer began in:
    /// the gateway decides a request's window when it admits it, which can
    /// be long after it was sent (a call to a Redis that just died waits its
    /// timeout), but only the upstream's few milliseconds before it answers.
    pub by_second: Mutex<BTreeMap<u64, usize>>,
}

impl Tally {
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    pub fn other(&self) -> Vec<String> {
        self.other.lock().unwrap().clone()
    }

    /// Admitted requests per second, in order of the seconds.
    pub fn per_second(&self) -> Vec<(u64, usize)> {
        self.by_second
            .lock()
            .unwrap()
            .iter()
            .map(|(s, n)| (*s, *n))
            .collect()
    }
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build()
}

/// One chat, tallied.
pub fn one_request(agent: &ureq::Agent, url: &str, body: &str, tally: &Tally) {
    let started = Instant::now();
    match agent.post(url).send_string(body) {
        Ok(r) if r.status() == 200 => {
            let second = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            tally.ok.fetch_add(1, Ordering::Relaxed);
            *tally.by_second.lock().unwrap().entry(second).or_default() += 1;
        }
        Err(ureq::Error::Status(429, _)) => {
            tally.refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(r) => tally.other.lock().unwrap().push(r.status().to_string()),
        Err(e) => tally.other.lock().unwrap().push(e.to_string()),
    }
    let ms = started.elapsed().as_millis() as usize;
    tally.slowest_ms.fetch_max(ms, Ordering::Relaxed);
}

/// Two threads per gateway sending chats for `model`, `pause` apart, until
/// [`SteadyFlood::stop`]: traffic spread over time, as during a failover.
pub struct SteadyFlood {
    stop: Arc<AtomicBool>,
    pub tally: Arc<Tally>,
    threads: Vec<JoinHandle<()>>,
}

impl SteadyFlood {
    pub fn start(gateways: &[Gateway], model: &str, pause: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let body = chat_body(model);
        let mut threads = Vec::new();
        for gw in gateways {
            for _ in 0..2 {
                let url = gw.url("/v1/chat/completions");
                let (stop, tally, body) = (stop.clone(), tally.clone(), body.clone());
                threads.push(std::thread::spawn(move || {
                    let agent = agent();
                    while !stop.load(Ordering::Relaxed) {
                        one_request(&agent, &url, &body, &tally);
                        std::thread::sleep(pause);
                    }
                }));
            }
        }
        Self {
            stop,
            tally,
            threads,
        }
    }

    /// Stops every thread and waits for it; what was seen.
    pub fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        self.tally
    }
}
