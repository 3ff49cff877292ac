//! The gateways' test peers, each a child process on its own loopback port, stopped with the
//! value that started it: localstripe (a fake Stripe API from PyPI) and the project's Adyen fake.
//! Also the official Stripe library's webhook signing, for the events localstripe never sends.

use reqwest::Client;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The Python that has localstripe and the official Stripe and Adyen libraries (`make test`
/// installs it and says where).
fn python() -> PathBuf {
    std::env::var_os("BILLY_PEERS_PYTHON")
        .map(PathBuf::from)
        .expect("BILLY_PEERS_PYTHON names the peers' Python (run tests through `make test`)")
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/peers").join(name)
}

/// A peer process; it is killed when this is dropped.
#[derive(Debug)]
struct Peer {
    child: Child,
    port: u16,
    /// Kept open: a peer that prints again never meets a closed pipe.
    _stdout: BufReader<tokio::process::ChildStdout>,
}

impl Peer {
    async fn spawn(script_name: &str, args: &[&str]) -> Self {
        let mut child = Command::new(python())
            .arg(script(script_name))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{script_name} starts: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        tokio::time::timeout(std::time::Duration::from_secs(30), stdout.read_line(&mut first))
            .await
            .unwrap_or_else(|_| panic!("{script_name} announced no port"))
            .unwrap();
        let port = first.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            panic!("{script_name} said {first:?} instead of its port");
        });
        Self { child, port, _stdout: stdout }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn stop(mut self) {
        self.kill().await;
    }

    async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// localstripe on a loopback port of its own, its state in memory.
#[derive(Debug)]
pub struct LocalStripe {
    peer: Peer,
    http: Client,
    pub api_key: String,
}

impl LocalStripe {
    pub async fn start() -> Self {
        let peer = Peer::spawn("localstripe_loopback.py", &["0"]).await;
        Self { peer, http: Client::new(), api_key: format!("sk_test_{}", uuid::Uuid::new_v4().simple()) }
    }

    pub fn url(&self) -> String {
        self.peer.url()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.peer.port))
    }

    pub async fn stop(self) {
        self.peer.stop().await;
    }

    /// Stops the process but keeps this value: its port then refuses connections.
    pub async fn kill(&mut self) {
        self.peer.kill().await;
    }

    async fn call(&self, method: reqwest::Method, path: &str, form: &[(&str, &str)]) -> Value {
        let answer = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(&self.api_key)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "localstripe {path}: {status} {body}");
        body
    }

    /// Where localstripe posts its events, signed with `secret`.
    pub async fn send_webhooks_to(&self, url: &str, secret: &str) {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.call(reqwest::Method::POST, &format!("/_config/webhooks/{id}"), &[("url", url), ("secret", secret)]).await;
    }

    /// A Stripe customer with a card (this number) attached: (customer, payment method).
    pub async fn customer_with_card(&self, number: &str) -> (String, String) {
        let customer = self.call(reqwest::Method::POST, "/v1/customers", &[("name", "Ada")]).await;
        let customer = customer["id"].as_str().unwrap().to_owned();
        let pm = self
            .call(
                reqwest::Method::POST,
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", number),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2031"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let pm = pm["id"].as_str().unwrap().to_owned();
        self.call(reqwest::Method::POST, &format!("/v1/payment_methods/{pm}/attach"), &[("customer", &customer)]).await;
        (customer, pm)
    }

    /// The payment intents localstripe holds, newest first.
    pub async fn intents(&self) -> Vec<Value> {
        let list = self.call(reqwest::Method::GET, "/v1/payment_intents?limit=100", &[]).await;
        list["data"].as_array().cloned().unwrap_or_default()
    }
}

/// The `Stripe-Signature` header the official library makes for `payload` (at unix time `t`).
pub async fn stripe_signature(payload: &str, secret: &str, t: i64) -> String {
    let code = "import os, sys, stripe\n\
                sys.stdout.write(stripe.WebhookSignature.generate_signature_header(\
                sys.stdin.read(), os.environ['SIGNING_SECRET'], int(os.environ['SIGNING_TIME'])))";
    let out = run_python(code, &[("SIGNING_SECRET", secret), ("SIGNING_TIME", &t.to_string())], payload).await;
    String::from_utf8(out).unwrap()
}

/// Runs `code` in the peers' Python with `env`, `stdin` on its standard input; its standard output.
async fn run_python(code: &str, env: &[(&str, &str)], stdin: &str) -> Vec<u8> {
    let mut child = Command::new(python())
        .args(["-c", code])
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "the peers' Python ran: {code}");
    out.stdout
}

/// The project's Adyen fake (infra/peers/adyen_fake.py), for one merchant account.
#[derive(Debug)]
pub struct AdyenFake {
    peer: Peer,
    http: Client,
    pub api_key: String,
    pub merchant: String,
    pub hmac_key: String,
}

impl AdyenFake {
    pub async fn start() -> Self {
        let api_key = format!("AQE{}", uuid::Uuid::new_v4().simple());
        let merchant = "BillyTestMerchant".to_owned();
        let hmac_key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()).to_uppercase();
        let peer = Peer::spawn(
            "adyen_fake.py",
            &[
                "--port",
                "0",
                "--api-key",
                &api_key,
                "--merchant",
                &merchant,
                "--hmac-key",
                &hmac_key,
                "--delay-ms",
                "200",
            ],
        )
        .await;
        Self { peer, http: Client::new(), api_key, merchant, hmac_key }
    }

    /// The Checkout API base Billy is pointed at.
    pub fn api_base(&self) -> String {
        format!("{}/v72", self.peer.url())
    }

    pub async fn stop(self) {
        self.peer.stop().await;
    }

    async fn control(&self, path: &str, body: &Value) -> Value {
        let answer = self.http.post(format!("{}/_test{path}", self.peer.url())).json(body).send().await.unwrap();
        assert!(answer.status().is_success(), "adyen fake {path}: {}", answer.status());
        answer.json().await.unwrap()
    }

    /// A stored payment method of `shopper` (`scheme` or `pix`) whose payments end `outcome`
    /// (`authorised`, `refused`, `insufficient_funds`, `error`); its id.
    pub async fn stored_method(&self, shopper: &str, kind: &str, last4: &str, outcome: &str) -> String {
        let body = json!({"shopperReference": shopper, "type": kind, "lastFour": last4, "expiryMonth": "03", "expiryYear": "2030", "outcome": outcome});
        self.control("/storedPaymentMethods", &body).await["id"].as_str().unwrap().to_owned()
    }

    /// Where notifications go; `hold` keeps them until called again without it.
    pub async fn notify(&self, url: &str, hold: bool) {
        self.control("/webhook", &json!({"url": url, "hold": hold})).await;
    }

    pub async fn chargeback(&self, psp: &str) {
        self.control(&format!("/chargebacks/{psp}"), &json!({})).await;
    }

    /// Payments and modifications asked of the fake.
    pub async fn state(&self) -> Value {
        self.http.get(format!("{}/_test/state", self.peer.url())).send().await.unwrap().json().await.unwrap()
    }
}

/// What the official Stripe library's `Webhook.construct_event` makes of a delivery signed in
/// Stripe's scheme: the event's id and type, or the library's refusal.
pub async fn stripe_construct_event(payload: &str, header: &str, secret: &str) -> Result<(String, String), String> {
    let code = "import os, sys, json, stripe\n\
                try:\n    e = stripe.Webhook.construct_event(sys.stdin.read(), os.environ['SIG_HEADER'], os.environ['SIGNING_SECRET'])\n\
                \x20   sys.stdout.write(json.dumps({'id': e['id'], 'type': e['type']}))\n\
                except stripe.error.SignatureVerificationError as err:\n    sys.stdout.write(json.dumps({'refused': str(err)}))";
    let out = run_python(code, &[("SIGNING_SECRET", secret), ("SIG_HEADER", header)], payload).await;
    let answer: Value = serde_json::from_slice(&out).unwrap();
    match answer.get("refused") {
        Some(why) => Err(why.to_string()),
        None => Ok((
            answer["id"].as_str().unwrap_or_default().to_owned(),
            answer["type"].as_str().unwrap_or_default().to_owned(),
        )),
    }
}
