//! Pacing to the account's rate. IAM has one request rate per account, shared by every
//! tool that calls it, and answers above it with `Throttling: Rate exceeded`. The
//! operator learns that rate from those answers instead of failing on them: every HTTP
//! attempt to IAM and STS goes through one [`Pacer`] per account (shared by every
//! controller), which
//!
//! - lets calls through unpaced until the account first throttles one;
//! - then spaces them at a rate that, at each throttling answer (at most once per
//!   [`DECREASE_GAP`]), drops to [`DECREASE`] times the rate the account accepted over
//!   the last [`WINDOW`], and rises by [`INCREASE`] requests/s for each second's worth
//!   of accepted calls (additive increase, multiplicative decrease). A throttled call
//!   takes nothing from the account's bucket, so the accepted rate at a throttle is the
//!   account's rate: dropping just under it (rather than halving, or a fixed fifth)
//!   keeps the operator within a few percent of the rate while it has work queued;
//! - answers a throttled attempt itself: it waits for its next slot and sends the
//!   request again, for up to [`PATIENCE`] (safe for every call, CreateAccessKey
//!   included: a throttled request was refused, not carried out). Only then does the SDK see the throttling
//!   (its standard mode retries an attempt 3 times), so a call is reported
//!   `AwsThrottled` only after about 3 × [`PATIENCE`] of throttling answers.
//!
//! `--aws-max-requests-per-second` stays a hard ceiling above all of this (the token
//! bucket in `Aws::call`); the learned rate never exceeds it.
//!
//! Why not the SDK's adaptive retry mode, which is also a client-side rate limiter fed by
//! throttling answers: it collapsed to its floor rate under the fault suite's random
//! throttling and held calls past their timeout (see `Aws::from_env`), it is keyed by
//! client rather than by account, and it keeps its rate to itself (no metric). The SDK
//! does offer the extension point used here: an `HttpClient` that wraps its default one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;

use crate::telemetry::Metrics;

/// The lowest rate the pacer goes down to, requests per second.
pub const FLOOR: f64 = 1.0;
/// At a throttling answer the rate becomes this times the rate the account accepted
/// (measured: 0.8 left a converge of 300 pairs at 20 calls/s 8 % behind a perfectly
/// paced client; see the IAM-like benchmark in the README).
pub const DECREASE: f64 = 0.95;
/// At most one decrease per this long: the answers to calls sent together at a rate
/// that was too high arrive together, and are one signal, not many.
pub const DECREASE_GAP: Duration = Duration::from_secs(1);
/// Requests per second added for every second's worth of accepted calls (each accepted
/// call adds `INCREASE / rate`).
pub const INCREASE: f64 = 1.0;
/// How long one attempt's throttling answers are absorbed (re-sent at the learned rate),
/// from the first, before the SDK sees one. Well inside the 60 s a call may take.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// The window over which the rate the account accepted is measured: two seconds of
/// answers, so one second's jitter in when they arrive is not taken for the rate.
pub const WINDOW: Duration = Duration::from_secs(2);

/// The pacing decision, without I/O or clocks (every time is passed in): unit- and
/// property-tested.
#[derive(Debug, Clone)]
pub struct Aimd {
    /// `None` until the first throttling answer: no pacing.
    rate: Option<f64>,
    ceiling: Option<f64>,
    /// The next free slot.
    next: Instant,
    last_decrease: Option<Instant>,
    /// When the calls the account accepted within the last [`WINDOW`] were answered.
    accepted: VecDeque<Instant>,
    /// When pacing began: the window is shorter until then.
    began: Instant,
}

impl Aimd {
    pub fn new(ceiling: Option<f64>, now: Instant) -> Self {
        Self {
            rate: None,
            ceiling: ceiling.map(|c| c.max(FLOOR)),
            next: now,
            last_decrease: None,
            accepted: VecDeque::new(),
            began: now,
        }
    }

    /// The learned rate, requests per second; `None` while unpaced.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Take the next slot: how long to wait before sending.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        let slot = match self.rate {
            None => now,
            Some(r) => {
                let slot = self.next.max(now);
                self.next = slot + Duration::from_secs_f64(1.0 / r);
                slot
            }
        };
        slot.saturating_duration_since(now)
    }

    /// The account took a call, answered at `now`.
    pub fn accepted(&mut self, now: Instant) {
        self.forget_before(now);
        self.accepted.push_back(now);
        if let Some(r) = self.rate {
            self.rate = Some((r + INCREASE / r).min(self.ceiling.unwrap_or(f64::MAX)));
        }
    }

    /// The account throttled a call. Returns whether the rate went down (at most once
    /// per [`DECREASE_GAP`]). The decrease starts from the rate the account accepted
    /// (from the unpaced state too), or the learned rate when that is lower.
    pub fn throttled(&mut self, now: Instant) -> bool {
        if self
            .last_decrease
            .is_some_and(|at| now.saturating_duration_since(at) < DECREASE_GAP)
        {
            return false;
        }
        self.forget_before(now);
        // Over the window, or the time since the pacer began when shorter (the first
        // throttle comes a second or so after the first calls).
        let span = now
            .saturating_duration_since(self.began)
            .clamp(Duration::from_millis(100), WINDOW);
        let accepted = self.accepted.len() as f64 / span.as_secs_f64();
        let from = match self.rate {
            Some(r) => r.min(accepted.max(FLOOR)),
            None => accepted,
        };
        let mut rate = (from * DECREASE).max(FLOOR);
        if let Some(c) = self.ceiling {
            rate = rate.min(c);
        }
        self.rate = Some(rate);
        self.last_decrease = Some(now);
        // Slots already handed out at the old rate stay; the next one follows them.
        true
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.accepted.pop_front();
        }
    }
}

/// One account's pacer, shared by every client of that account.
pub struct Pacer {
    state: Mutex<Aimd>,
    account: String,
    metrics: Metrics,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("account", &self.account)
            .field("state", &self.state)
            .finish()
    }
}

impl Pacer {
    /// `account` labels the metrics (`operator` for the operator's own account).
    pub fn new(account: &str, ceiling: Option<f64>, metrics: Metrics) -> Arc<Self> {
        metrics.aws_pace(account, 0.0);
        metrics.aws_throttle_absorbed(account, 0);
        Arc::new(Self {
            state: Mutex::new(Aimd::new(ceiling, Instant::now())),
            account: account.to_string(),
            metrics,
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Aimd> {
        self.state.lock().expect("pacer lock")
    }

    async fn wait_turn(&self) {
        let wait = self.state().reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    fn accepted(&self) {
        let mut s = self.state();
        s.accepted(Instant::now());
        self.metrics
            .aws_pace(&self.account, s.rate().unwrap_or_default());
    }

    fn throttled(&self) {
        let mut s = self.state();
        if s.throttled(Instant::now()) {
            let rate = s.rate().unwrap_or_default();
            tracing::debug!(account = %self.account, rate, "AWS throttled: pacing down");
            self.metrics.aws_pace(&self.account, rate);
        }
    }

    /// The HTTP client that sends through this pacer.
    pub fn client(self: &Arc<Self>, inner: SharedHttpClient) -> SharedHttpClient {
        SharedHttpClient::new(PacedClient {
            inner,
            pacer: self.clone(),
        })
    }
}

/// The SDK's default HTTPS client (hyper 1, rustls with aws-lc, the proxy from the
/// environment), as the SDK builds it when none is given.
pub fn default_http_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut b = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        b.set_connector_settings(settings.cloned());
        if let Some(c) = components {
            b.set_sleep_impl(c.sleep_impl());
        }
        b.set_proxy_config(Some(ProxyConfig::from_env()));
        b.build()
    })
}

#[derive(Debug)]
struct PacedClient {
    inner: SharedHttpClient,
    pacer: Arc<Pacer>,
}

impl HttpClient for PacedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PacedConnector {
            inner: self.inner.http_connector(settings, components),
            pacer: self.pacer.clone(),
        })
    }
}

#[derive(Debug)]
struct PacedConnector {
    inner: SharedHttpConnector,
    pacer: Arc<Pacer>,
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, pacer) = (self.inner.clone(), self.pacer.clone());
        HttpConnectorFuture::new(async move {
            // From the first throttling answer: the wait for a slot before it is the
            // queue's, not the account's refusal.
            let mut until = None;
            let mut request = request;
            loop {
                // A copy to send again if this one is throttled (IAM's form bodies are
                // in memory; a body that cannot be copied is sent once).
                let again = request.try_clone();
                pacer.wait_turn().await;
                let response = inner.call(request).await?;
                let (response, throttled) = classify(response).await?;
                if !throttled {
                    if !response.status().is_server_error() {
                        pacer.accepted();
                    }
                    return Ok(response);
                }
                pacer.throttled();
                let until = *until.get_or_insert_with(|| Instant::now() + PATIENCE);
                match again {
                    Some(r) if Instant::now() < until => {
                        pacer.metrics.aws_throttle_absorbed(&pacer.account, 1);
                        request = r;
                    }
                    _ => return Ok(response),
                }
            }
        })
    }
}

/// Whether a response is a throttling answer. The error code is in the body of a 400
/// (IAM and STS: `Throttling`; JSON services: `ThrottlingException`), a 429, or a 503
/// (EC2: `RequestLimitExceeded`); those small bodies are read and put back.
async fn classify(mut response: HttpResponse) -> Result<(HttpResponse, bool), ConnectorError> {
    let status = response.status().as_u16();
    if status == 429 {
        return Ok((response, true));
    }
    if status != 400 && status != 503 {
        return Ok((response, false));
    }
    let body = ByteStream::new(response.take_body())
        .collect()
        .await
        .map_err(|e| ConnectorError::io(e.into()))?
        .into_bytes();
    let throttled = is_throttling_body(&body);
    *response.body_mut() = SdkBody::from(body);
    Ok((response, throttled))
}

fn is_throttling_body(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    [
        "<Code>Throttling</Code>",
        "ThrottlingException",
        "RequestLimitExceeded",
    ]
    .iter()
    .any(|code| text.contains(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unpaced_until_the_first_throttle_then_spaced_just_under_the_rate_accepted() {
        let t0 = Instant::now();
        let mut a = Aimd::new(None, t0);
        // 20 calls in the first second go out at once; 18 are accepted.
        for i in 0..20 {
            assert_eq!(a.reserve(t0 + ms(i * 50)), Duration::ZERO);
        }
        for i in 0..18 {
            a.accepted(t0 + ms(100 + i * 50));
        }
        assert_eq!(a.rate(), None);
        assert!(a.throttled(t0 + ms(1000)));
        let rate = a.rate().unwrap();
        assert!((rate - 18.0 * DECREASE).abs() < 1e-9, "{rate}");
        // Calls asked for together are spaced at 1/rate.
        let now = t0 + ms(1000);
        let waits: Vec<Duration> = (0..4).map(|_| a.reserve(now)).collect();
        let gap = Duration::from_secs_f64(1.0 / rate);
        assert_eq!(waits[0], Duration::ZERO);
        for w in waits.windows(2) {
            let d = w[1] - w[0];
            assert!(d.abs_diff(gap) < ms(1), "{d:?} vs {gap:?}");
        }
        // A burst of throttling answers is one decrease.
        assert!(!a.throttled(now + ms(10)));
        assert_eq!(a.rate(), Some(rate));
        assert!(a.throttled(now + ms(1100)));
        assert!(a.rate().unwrap() < rate);
    }

    #[test]
    fn accepted_calls_raise_the_rate_by_one_per_second_of_calls_up_to_the_ceiling() {
        let t0 = Instant::now();
        let mut a = Aimd::new(Some(12.0), t0);
        for i in 0..20 {
            a.accepted(t0 + ms(i * 100 + 50));
        }
        a.throttled(t0 + WINDOW);
        assert_eq!(a.rate(), Some(10.0 * DECREASE));
        for _ in 0..10 {
            a.accepted(t0 + WINDOW);
        }
        let r = a.rate().unwrap();
        assert!(r > 10.4 && r < 10.6, "{r}");
        for _ in 0..1000 {
            a.accepted(t0 + WINDOW);
        }
        assert_eq!(a.rate(), Some(12.0), "the ceiling holds");
    }

    /// An account that takes `limit` calls per second (a token bucket as big as one
    /// second's calls) and 32 callers that send as fast as they are let: the pacer
    /// learns the rate (measured: 5.0, 20.0 and 80.0 calls/s accepted, 10 %, 2 % and
    /// 0.2 % of calls throttled, re-sent by the pacer). Virtual time, 100 ms per answer.
    #[test]
    fn learns_an_account_rate_from_its_throttling() {
        for limit in [5.0, 20.0, 80.0] {
            let t0 = Instant::now();
            let mut a = Aimd::new(None, t0);
            let (mut tokens, mut refilled) = (limit, t0);
            let mut callers: Vec<Instant> = vec![t0; 32];
            let (mut ok, mut throttled) = (0u32, 0u32);
            let end = t0 + Duration::from_secs(120);
            let measure_from = t0 + Duration::from_secs(30);
            loop {
                let (i, &ready) = callers.iter().enumerate().min_by_key(|(_, t)| **t).unwrap();
                if ready >= end {
                    break;
                }
                let sent = ready + a.reserve(ready);
                tokens = (tokens + (sent - refilled).as_secs_f64() * limit).min(limit);
                refilled = sent;
                let answered = sent + ms(100);
                if tokens >= 1.0 {
                    tokens -= 1.0;
                    a.accepted(answered);
                    if sent >= measure_from && sent < end {
                        ok += 1;
                    }
                } else {
                    a.throttled(answered);
                    if sent >= measure_from && sent < end {
                        throttled += 1;
                    }
                }
                callers[i] = answered;
            }
            let rate = f64::from(ok) / 90.0;
            assert!(
                rate >= 0.8 * limit && rate <= 1.01 * limit,
                "limit {limit}: {rate:.1} calls/s accepted"
            );
            let share = f64::from(throttled) / f64::from(ok + throttled);
            // +1/s per second is a large step at 5/s: a tenth of the calls then meet
            // the limit (re-sent by the pacer); at 20/s about 2 %.
            assert!(share < 0.12, "limit {limit}: {share:.3} of calls throttled");
        }
    }

    #[test]
    fn throttling_bodies_are_recognised() {
        assert!(is_throttling_body(
            b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
        ));
        assert!(is_throttling_body(br#"{"__type":"ThrottlingException"}"#));
        assert!(!is_throttling_body(
            b"<ErrorResponse><Error><Code>NoSuchEntity</Code></Error></ErrorResponse>"
        ));
    }

    #[derive(Debug, Clone)]
    enum Event {
        Reserve(u16),
        Accepted,
        Throttled(u16),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u16..500).prop_map(Event::Reserve),
            Just(Event::Accepted),
            (0u16..2000).prop_map(Event::Throttled),
        ]
    }

    proptest! {
        /// Whatever the account answers: the rate stays between the floor and the
        /// ceiling, an accepted call never lowers it, a throttle never raises it, and a
        /// slot taken at rate r is followed by the next no sooner than 1/r later.
        #[test]
        fn the_rate_stays_in_bounds(ceiling in proptest::option::of(0.5f64..200.0),
                                    events in proptest::collection::vec(event(), 1..200)) {
            let t0 = Instant::now();
            let mut a = Aimd::new(ceiling, t0);
            let mut now = t0;
            let mut last: Option<(Instant, Option<f64>)> = None;
            for e in events {
                let before = a.rate();
                match e {
                    Event::Reserve(step) => {
                        now += ms(u64::from(step));
                        let slot = now + a.reserve(now);
                        if let Some((prev, Some(r))) = last {
                            let gap = slot.saturating_duration_since(prev).as_secs_f64();
                            prop_assert!(gap + 1e-6 >= 1.0 / r, "{gap} < 1/{r}");
                        }
                        last = Some((slot, before));
                    }
                    Event::Accepted => {
                        a.accepted(now);
                        if let (Some(b), Some(r)) = (before, a.rate()) {
                            prop_assert!(r >= b - 1e-9);
                        }
                    }
                    Event::Throttled(step) => {
                        now += ms(u64::from(step));
                        a.throttled(now);
                        if let (Some(b), Some(r)) = (before, a.rate()) {
                            prop_assert!(r <= b.max(FLOOR) + 1e-9);
                        }
                    }
                }
                if let Some(r) = a.rate() {
                    prop_assert!(r >= FLOOR - 1e-9);
                    if let Some(c) = ceiling {
                        prop_assert!(r <= c.max(FLOOR) + 1e-9);
                    }
                }
            }
        }
    }
}
