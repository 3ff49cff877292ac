//! The runner proper: an HTTP server that routes like API Gateway's HTTP API to the functions'
//! handlers, and SQS pollers that invoke handlers like Lambda's event source mappings (batch size,
//! partial batch failures, visibility timeout and the queue's real redrive policy).

use crate::functions::Handler;
use crate::provision::{Provisioned, REGION};
use crate::template::{EventSource, FunctionDef, Template};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use axum::body::Body as AxumBody;
use billy_aws::AwsClients;
use billy_lambda::{Config, EventFunction, HttpFunction, SqsFunction};
use http::{Request, Response, StatusCode};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::request::RequestContext;
use lambda_http::{Body as LambdaBody, RequestExt};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// API Gateway's payload limit.
const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RunnerOptions {
    pub bind: SocketAddr,
    /// Concurrent pollers per SQS event source (Lambda starts with several and scales out).
    pub pollers_per_queue: usize,
    /// Long-poll wait; short enough that shutdown is prompt.
    pub poll_wait_secs: i32,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self { bind: SocketAddr::from(([127, 0, 0, 1], 3000)), pollers_per_queue: 2, poll_wait_secs: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

/// Invocations per function, as Lambda would bill them.
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<std::sync::Mutex<BTreeMap<String, u64>>>);

impl Calls {
    pub(crate) fn hit(&self, function: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(function.to_owned()).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

struct Route {
    calls: Calls,
    method: String,
    /// The template's path, parameters unfilled (`/v1/invoices/{id}`).
    path: String,
    segments: Vec<Segment>,
    function: String,
    handler: Arc<dyn HttpFunction>,
}

struct SqsSource {
    calls: Calls,
    function: String,
    queue_url: String,
    queue_arn: String,
    batch_size: usize,
    batching_window: Duration,
    report_failures: bool,
    timeout: Duration,
    handler: Arc<dyn SqsFunction>,
}

/// A function invoked on a fixed rate, as an EventBridge schedule would.
struct ScheduleSource {
    calls: Calls,
    function: String,
    every: Duration,
    handler: Arc<dyn EventFunction>,
}

/// A function invoked with each event its rule matches (delivered through a bridge queue).
struct RuleSource {
    calls: Calls,
    function: String,
    queue_url: String,
    handler: Arc<dyn EventFunction>,
}

/// A runner ready to start: every function of the template has its handler.
pub struct Runner {
    routes: Vec<Route>,
    sources: Vec<SqsSource>,
    streams: Vec<crate::streams::StreamSource>,
    schedules: Vec<ScheduleSource>,
    rules: Vec<RuleSource>,
    aws: AwsClients,
    calls: Calls,
    /// Where each route served is recorded (`make test`'s least-privilege check needs every route
    /// of the template exercised).
    access: Option<crate::access::AccessLog>,
}

/// Parses `rate(N unit)`; cron expressions are not run locally (the template uses rates).
pub fn parse_rate(expression: &str) -> Result<Duration, String> {
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("only rate(...) schedules run locally, not '{expression}'"))?;
    let (n, unit) = inner.trim().split_once(' ').ok_or_else(|| format!("bad rate '{expression}'"))?;
    let n: u64 = n.parse().map_err(|_| format!("bad rate '{expression}'"))?;
    let secs = match unit.trim() {
        "minute" | "minutes" => 60,
        "hour" | "hours" => 3600,
        "day" | "days" => 86_400,
        other => return Err(format!("bad rate unit '{other}'")),
    };
    Ok(Duration::from_secs(n * secs))
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("routes", &self.routes.len())
            .field("sqs_sources", &self.sources.len())
            .field("schedules", &self.schedules.len())
            .field("rules", &self.rules.len())
            .field("streams", &self.streams.len())
            .finish()
    }
}

/// The configuration a function gets: its template variables resolved to local names.
pub fn function_config(def: &FunctionDef, provisioned: &Provisioned) -> Result<Config, String> {
    let mut vars = BTreeMap::new();
    for (k, v) in &def.environment {
        vars.insert(k.clone(), provisioned.resolver.resolve(v).map_err(|e| format!("{}: {k}: {e}", def.logical_id))?);
    }
    Ok(Config::from_map(vars))
}

fn parse_path(path: &str) -> Vec<Segment> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(p) if p.ends_with('+') => Segment::Greedy(p.trim_end_matches('+').to_owned()),
            Some(p) => Segment::Param(p.to_owned()),
            None => Segment::Literal(s.to_owned()),
        })
        .collect()
}

impl Runner {
    /// Wires every function of `template`; `make` builds a handler from a function's definition and
    /// configuration (normally `functions::build`).
    pub fn build(
        template: &Template,
        provisioned: &Provisioned,
        aws: &AwsClients,
        make: impl Fn(&FunctionDef, &Config) -> Result<Handler, String>,
    ) -> Result<Self, String> {
        let mut routes = Vec::new();
        let mut sources = Vec::new();
        let mut schedules = Vec::new();
        let mut rules = Vec::new();
        let mut streams = Vec::new();
        let calls = Calls::default();
        for def in template.functions().map_err(|e| e.to_string())? {
            let config = function_config(&def, provisioned)?;
            let handler = make(&def, &config)?;
            for (event_id, event) in &def.events {
                let wrong =
                    |want: &str| format!("{}.{event_id}: a {want} event needs a {want} handler", def.logical_id);
                match (event, &handler) {
                    (EventSource::Http { method, path }, Handler::Http(h)) => routes.push(Route {
                        calls: calls.clone(),
                        method: method.clone(),
                        path: path.clone(),
                        segments: parse_path(path),
                        function: def.name.clone(),
                        handler: Arc::clone(h),
                    }),
                    (EventSource::Http { .. }, _) => return Err(wrong("HTTP")),
                    (
                        EventSource::Sqs { queue, batch_size, batching_window_secs, report_failures },
                        Handler::Sqs(h),
                    ) => {
                        let (_, url, arn) = provisioned
                            .queues
                            .get(queue)
                            .ok_or_else(|| format!("{}: queue {queue} was not provisioned", def.logical_id))?;
                        sources.push(SqsSource {
                            calls: calls.clone(),
                            function: def.name.clone(),
                            queue_url: url.clone(),
                            queue_arn: arn.clone(),
                            batch_size: *batch_size,
                            batching_window: Duration::from_secs(*batching_window_secs),
                            report_failures: *report_failures,
                            timeout: Duration::from_secs(def.timeout_secs),
                            handler: Arc::clone(h),
                        });
                    }
                    (EventSource::Sqs { .. }, _) => return Err(wrong("SQS")),
                    (EventSource::Schedule { expression }, Handler::Event(h)) => schedules.push(ScheduleSource {
                        calls: calls.clone(),
                        function: def.name.clone(),
                        every: parse_rate(expression)?,
                        handler: Arc::clone(h),
                    }),
                    (EventSource::Rule { .. }, Handler::Event(h)) => {
                        let bridge = provisioned
                            .bridges
                            .get(&(def.logical_id.clone(), event_id.clone()))
                            .ok_or_else(|| format!("{}.{event_id}: rule bridge was not provisioned", def.logical_id))?;
                        rules.push(RuleSource {
                            calls: calls.clone(),
                            function: def.name.clone(),
                            queue_url: bridge.queue_url.clone(),
                            handler: Arc::clone(h),
                        });
                    }
                    (EventSource::Schedule { .. } | EventSource::Rule { .. }, _) => return Err(wrong("EventBridge")),
                    (
                        EventSource::Stream { table, batch_size, report_failures, max_retries, on_failure, windowed },
                        Handler::Stream(h),
                    ) => {
                        let stream_arn = provisioned
                            .streams
                            .get(table)
                            .ok_or_else(|| format!("{}: table {table} has no stream", def.logical_id))?;
                        let on_failure = match on_failure {
                            Some(queue) => Some(
                                provisioned
                                    .queue_url(queue)
                                    .ok_or_else(|| format!("{}: queue {queue} was not provisioned", def.logical_id))?
                                    .to_owned(),
                            ),
                            None => None,
                        };
                        streams.push(crate::streams::StreamSource {
                            calls: calls.clone(),
                            function: def.name.clone(),
                            stream_arn: stream_arn.clone(),
                            batch_size: *batch_size,
                            report_failures: *report_failures,
                            max_retries: *max_retries,
                            on_failure,
                            windowed: *windowed,
                            timeout: Duration::from_secs(def.timeout_secs),
                            handler: Arc::clone(h),
                        });
                    }
                    (EventSource::Stream { .. }, _) => return Err(wrong("DynamoDB stream")),
                }
            }
        }
        Ok(Self { routes, sources, streams, schedules, rules, aws: aws.clone(), calls, access: None })
    }

    /// Records every route served in `log`.
    #[must_use]
    pub fn recording_routes(self, log: Option<crate::access::AccessLog>) -> Self {
        Self { access: log, ..self }
    }

    /// Binds the HTTP server and starts every poller.
    pub async fn start(self, options: &RunnerOptions) -> std::io::Result<RunningRunner> {
        let listener = tokio::net::TcpListener::bind(options.bind).await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for source in self.sources.into_iter().map(Arc::new) {
            for _ in 0..options.pollers_per_queue.max(1) {
                tasks.push(tokio::spawn(poll(
                    Arc::clone(&source),
                    self.aws.sqs.clone(),
                    options.poll_wait_secs,
                    stop_rx.clone(),
                )));
            }
        }
        let mut scheduled = BTreeMap::new();
        for schedule in self.schedules {
            scheduled.insert(schedule.function.clone(), Arc::clone(&schedule.handler));
            tasks.push(tokio::spawn(run_schedule(schedule, stop_rx.clone())));
        }
        if !self.streams.is_empty() {
            let client = crate::streams::local_client();
            for stream in self.streams.into_iter().map(Arc::new) {
                tasks.push(tokio::spawn(crate::streams::poll(
                    stream,
                    client.clone(),
                    self.aws.sqs.clone(),
                    stop_rx.clone(),
                )));
            }
        }
        for rule in self.rules.into_iter().map(Arc::new) {
            tasks.push(tokio::spawn(poll_rule(rule, self.aws.sqs.clone(), options.poll_wait_secs, stop_rx.clone())));
        }
        let routes = Arc::new(self.routes);
        let access = self.access;
        let app = axum::Router::new().fallback(move |req: Request<AxumBody>| {
            let routes = Arc::clone(&routes);
            let access = access.clone();
            async move { serve(&routes, access.as_ref(), req).await }
        });
        let mut server_stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|stopped| *stopped).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        }));
        Ok(RunningRunner { addr, stop: stop_tx, tasks, calls: self.calls, scheduled: Scheduled(scheduled) })
    }
}

/// A started runner; `shutdown` stops accepting work and waits for in-flight invocations.
#[derive(Debug)]
pub struct RunningRunner {
    pub addr: SocketAddr,
    /// Invocations per function since start (or the last reset).
    pub calls: Calls,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    scheduled: Scheduled,
}

/// The functions a schedule invokes, by name.
struct Scheduled(BTreeMap<String, Arc<dyn EventFunction>>);

impl std::fmt::Debug for Scheduled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// The event an EventBridge schedule invokes its function with.
fn scheduled_event() -> EventBridgeEvent {
    let mut event = EventBridgeEvent::default();
    event.detail_type = "Scheduled Event".into();
    event.source = "aws.events".into();
    event.time = Some(chrono::Utc::now());
    event.detail = serde_json::json!({});
    event
}

impl RunningRunner {
    /// Invokes a scheduled function now, as its schedule would (tests do not wait an hour).
    pub async fn run_scheduled(&self, function: &str) -> Result<(), String> {
        let handler = self.scheduled.0.get(function).ok_or_else(|| format!("{function} has no schedule"))?;
        self.calls.hit(function);
        handler.handle(scheduled_event()).await.map_err(|e| format!("{function}: {e}"))
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn route_not_found() -> Response<AxumBody> {
    let mut res = Response::new(AxumBody::from(
        r#"{"error":{"type":"invalid_request_error","code":"route_not_found","message":"no such route","param":null}}"#,
    ));
    *res.status_mut() = StatusCode::NOT_FOUND;
    res.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    res
}

fn match_route<'a>(routes: &'a [Route], method: &str, path: &str) -> Option<(&'a Route, HashMap<String, String>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    'routes: for route in routes {
        if route.method != method && route.method != "ANY" {
            continue;
        }
        let mut params = HashMap::new();
        for (i, seg) in route.segments.iter().enumerate() {
            match seg {
                Segment::Greedy(name) if i < parts.len() => {
                    params.insert(name.clone(), parts[i..].join("/"));
                    return Some((route, params));
                }
                Segment::Literal(l) if parts.get(i) == Some(&l.as_str()) => {}
                Segment::Param(name) if i < parts.len() => {
                    params.insert(name.clone(), decode(parts[i]));
                }
                _ => continue 'routes,
            }
        }
        if route.segments.len() == parts.len() {
            return Some((route, params));
        }
    }
    None
}

fn decode(segment: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={segment}"))
        .ok()
        .and_then(|mut v| v.pop())
        .map_or_else(|| segment.to_owned(), |(_, value)| value)
}

/// Turns an HTTP request into the `lambda_http` request API Gateway would deliver, and back.
async fn serve(
    routes: &[Route],
    access: Option<&crate::access::AccessLog>,
    req: Request<AxumBody>,
) -> Response<AxumBody> {
    let (parts, body) = req.into_parts();
    let Some((route, params)) = match_route(routes, parts.method.as_str(), parts.uri.path()) else {
        return route_not_found();
    };
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        let mut res = Response::new(AxumBody::from(r#"{"message":"Request Entity Too Large"}"#));
        *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return res;
    };
    let query: Vec<(String, String)> =
        parts.uri.query().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default();
    let mut query_map: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in query {
        query_map.entry(k).or_default().push(v);
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(request_id.clone());
    // As API Gateway names it: the template's route, parameters unfilled.
    context.route_key = Some(format!("{} {}", route.method, route.path));
    context.stage = Some("$default".into());
    context.time_epoch = chrono::Utc::now().timestamp_millis();
    context.http.method = parts.method.clone();
    context.http.path = Some(parts.uri.path().to_owned());
    let lambda_body = if bytes.is_empty() {
        LambdaBody::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => LambdaBody::Text(text),
            Err(e) => LambdaBody::Binary(e.into_bytes()),
        }
    };
    let request = Request::from_parts(parts, lambda_body)
        .with_path_parameters(params)
        .with_query_string_parameters(query_map)
        .with_request_context(RequestContext::ApiGatewayV2(context));
    let started = Instant::now();
    route.calls.hit(&route.function);
    let response = route.handler.handle(request).await;
    // Only an answered request counts as the route exercised (a redirect is an answer): one
    // refused before it did its work (a 4xx) says nothing about the grants the work needs.
    if let Some(log) = access
        && (response.status().is_success() || response.status().is_redirection())
    {
        log.record_route(&route.function, &route.method, &route.path);
    }
    tracing::debug!(function = %route.function, status = %response.status(), elapsed_ms = started.elapsed().as_millis(), "invoked");
    let (mut parts, body) = response.into_parts();
    parts.headers.insert(
        "apigw-requestid",
        http::HeaderValue::from_str(&request_id).unwrap_or(http::HeaderValue::from_static("-")),
    );
    let body = match body {
        LambdaBody::Empty => AxumBody::empty(),
        LambdaBody::Text(t) => AxumBody::from(t),
        LambdaBody::Binary(b) => AxumBody::from(b),
        _ => AxumBody::empty(),
    };
    Response::from_parts(parts, body)
}

/// Invokes a scheduled function every period (the first time one period after start).
async fn run_schedule(source: ScheduleSource, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + source.every, source.every);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = ticker.tick() => {
                source.calls.hit(&source.function);
                if let Err(e) = source.handler.handle(scheduled_event()).await {
                    tracing::warn!(function = %source.function, error = %e, "scheduled invocation failed");
                }
            }
        }
    }
}

/// Delivers the events a rule matched to its function, one invocation per event. A failed
/// invocation is retried twice (as Lambda retries asynchronous invocations), then dropped.
async fn poll_rule(source: Arc<RuleSource>, sqs: aws_sdk_sqs::Client, wait_secs: i32, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let received = tokio::select! {
            _ = stop.changed() => break,
            r = sqs.receive_message()
                .queue_url(&source.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(wait_secs)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .send() => r,
        };
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(function = %source.function, error = ?e.into_service_error(), "receive failed; backing off");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        for m in messages {
            let receives: u32 = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            let outcome = match serde_json::from_str::<EventBridgeEvent>(m.body.as_deref().unwrap_or_default()) {
                Ok(event) => {
                    source.calls.hit(&source.function);
                    source.handler.handle(event).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("undecodable event: {e}")),
            };
            let done = match outcome {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(function = %source.function, error = %e, receives, "event invocation failed");
                    receives >= 3
                }
            };
            if done && let Some(receipt) = m.receipt_handle {
                let _ = sqs.delete_message().queue_url(&source.queue_url).receipt_handle(receipt).send().await;
            }
        }
    }
}

/// One poller of one event source, until stopped.
async fn poll(source: Arc<SqsSource>, sqs: aws_sdk_sqs::Client, wait_secs: i32, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        let batch = tokio::select! {
            _ = stop.changed() => break,
            batch = receive_batch(&source, &sqs, wait_secs) => batch,
        };
        match batch {
            Ok(messages) if messages.is_empty() => {}
            Ok(messages) => invoke(&source, &sqs, messages).await,
            Err(e) => {
                tracing::warn!(function = %source.function, error = %e, "receive failed; backing off");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Receives up to `batch_size` messages, waiting up to the batching window to fill a batch.
async fn receive_batch(
    source: &SqsSource,
    sqs: &aws_sdk_sqs::Client,
    wait_secs: i32,
) -> Result<Vec<SqsMessage>, String> {
    let deadline = Instant::now() + source.batching_window;
    let mut messages = Vec::new();
    loop {
        let want = (source.batch_size - messages.len()).min(10);
        let out = sqs
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(i32::try_from(want).unwrap_or(10))
            .wait_time_seconds(if messages.is_empty() { wait_secs } else { 0 })
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| format!("{:?}", e.into_service_error()))?;
        let received = out.messages.unwrap_or_default();
        let got = received.len();
        messages.extend(received.into_iter().map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id;
            record.receipt_handle = m.receipt_handle;
            record.body = m.body;
            record.md5_of_body = m.md5_of_body;
            record.attributes =
                m.attributes.unwrap_or_default().into_iter().map(|(k, v)| (k.as_str().to_owned(), v)).collect();
            record.event_source = Some("aws:sqs".into());
            record.event_source_arn = Some(source.queue_arn.clone());
            record.aws_region = Some(REGION.into());
            record
        }));
        if messages.len() >= source.batch_size || got == 0 || Instant::now() >= deadline {
            return Ok(messages);
        }
    }
}

/// Invokes the handler with one batch and deletes what succeeded; failed messages stay on the
/// queue, reappear after the visibility timeout and reach the DLQ through the redrive policy.
async fn invoke(source: &SqsSource, sqs: &aws_sdk_sqs::Client, messages: Vec<SqsMessage>) {
    let mut event = SqsEvent::default();
    event.records = messages;
    let handles: Vec<(String, String)> =
        event.records.iter().filter_map(|m| Some((m.message_id.clone()?, m.receipt_handle.clone()?))).collect();
    source.calls.hit(&source.function);
    let outcome = tokio::time::timeout(source.timeout, source.handler.handle(event)).await;
    let failed: Vec<String> = match outcome {
        Ok(Ok(response)) if source.report_failures => {
            response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
        }
        Ok(Ok(_)) => Vec::new(),
        Ok(Err(e)) => {
            tracing::warn!(function = %source.function, error = %e, "invocation failed; the whole batch returns to the queue");
            return;
        }
        Err(_) => {
            tracing::warn!(function = %source.function, "invocation timed out; the whole batch returns to the queue");
            return;
        }
    };
    let done: Vec<_> = handles.into_iter().filter(|(id, _)| !failed.contains(id)).collect();
    for chunk in done.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, (_, receipt))| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt).build().ok()
            })
            .collect();
        if let Err(e) = sqs.delete_message_batch().queue_url(&source.queue_url).set_entries(Some(entries)).send().await
        {
            tracing::warn!(function = %source.function, error = ?e.into_service_error(), "delete failed; messages will be redelivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_literals_params_and_greedy_params() {
        assert_eq!(
            parse_path("/v1/customers/{id}/x/{rest+}"),
            vec![
                Segment::Literal("v1".into()),
                Segment::Literal("customers".into()),
                Segment::Param("id".into()),
                Segment::Literal("x".into()),
                Segment::Greedy("rest".into()),
            ]
        );
    }
}
