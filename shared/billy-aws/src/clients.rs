//! SDK clients, built once per process with deliberate retry and timeout settings.

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use std::time::Duration;

/// The SDK clients a function may use; cheap to clone (they share connection pools).
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
    pub kms: aws_sdk_kms::Client,
    /// Interceptors added to every client after construction (`with_interceptor`), for clients a
    /// function builds beside these (its S3 client).
    added: Vec<SharedInterceptor>,
}

impl AwsClients {
    /// Loads region, credentials and endpoints the standard way (`AWS_ENDPOINT_URL`,
    /// `AWS_ENDPOINT_URL_DYNAMODB`, ... point it at the local stack).
    ///
    /// Retries: the SDK's standard mode with 3 attempts and exponential backoff with jitter, so a
    /// throttled or 5xx call is retried briefly, but a Lambda never spends its whole timeout on one
    /// dependency. Timeouts: 1 s to connect and 3 s per attempt (DynamoDB and SQS answer in
    /// milliseconds; a slower answer is a fault worth retrying), 10 s per operation overall, below
    /// the functions' own timeouts so an error is reported instead of a killed invocation.
    pub async fn from_env() -> Self {
        Self::from_config(&loader().load().await)
    }

    /// Clients for the local stack only (fixed test credentials and loopback endpoints), whatever
    /// the environment says: tests can never reach a real AWS account by accident.
    pub async fn local(endpoints: &LocalEndpoints) -> Self {
        Self::local_metered(endpoints, None).await
    }

    /// Local clients whose every request is also counted by `meter` (benchmarks).
    pub async fn local_metered(endpoints: &LocalEndpoints, meter: Option<crate::metering::RequestMeter>) -> Self {
        Self::local_with(endpoints, meter, None).await
    }

    /// Local clients with an extra interceptor on DynamoDB calls (tests inject faults this way).
    pub async fn local_with(
        endpoints: &LocalEndpoints,
        meter: Option<crate::metering::RequestMeter>,
        dynamodb_interceptor: Option<aws_smithy_runtime_api::client::interceptors::SharedInterceptor>,
    ) -> Self {
        let config = loader()
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "billy-local"))
            .endpoint_url(&endpoints.localstack)
            .load()
            .await;
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&config).endpoint_url(&endpoints.dynamodb);
        let mut sqs = aws_sdk_sqs::config::Builder::from(&config);
        let mut eventbridge = aws_sdk_eventbridge::config::Builder::from(&config);
        if let Some(interceptor) = dynamodb_interceptor {
            dynamodb.push_interceptor(interceptor);
        }
        if let Some(meter) = meter {
            dynamodb = dynamodb.interceptor(meter.clone());
            sqs = sqs.interceptor(meter.clone());
            eventbridge = eventbridge.interceptor(meter);
        }
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            eventbridge: aws_sdk_eventbridge::Client::from_conf(eventbridge.build()),
            kms: aws_sdk_kms::Client::new(&config),
            added: Vec::new(),
        }
    }

    /// The same clients with `interceptor` on each (the local runner gives every function its own
    /// copy that records what it calls); the connection pools stay shared.
    #[must_use]
    pub fn with_interceptor(&self, interceptor: SharedInterceptor) -> Self {
        let mut added = self.added.clone();
        added.push(interceptor.clone());
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                self.dynamodb.config().to_builder().interceptor(interceptor.clone()).build(),
            ),
            sqs: aws_sdk_sqs::Client::from_conf(
                self.sqs.config().to_builder().interceptor(interceptor.clone()).build(),
            ),
            eventbridge: aws_sdk_eventbridge::Client::from_conf(
                self.eventbridge.config().to_builder().interceptor(interceptor.clone()).build(),
            ),
            kms: aws_sdk_kms::Client::from_conf(self.kms.config().to_builder().interceptor(interceptor).build()),
            added,
        }
    }

    /// The interceptors `with_interceptor` added, for the function's other clients.
    pub fn added_interceptors(&self) -> &[SharedInterceptor] {
        &self.added
    }

    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            eventbridge: aws_sdk_eventbridge::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            added: Vec::new(),
        }
    }
}

/// The HTTPS client every SDK client uses: rustls with ring, the one TLS and crypto stack of the
/// binaries (reqwest's too), instead of the SDK's default (rustls with aws-lc, a second crypto
/// library and a C build).
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(3))
                .operation_timeout(Duration::from_secs(10))
                .build(),
        )
}

/// Where the local stack listens; ports follow the stack scripts' LOCALSTACK_PORT / DYNAMODB_PORT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoints {
    pub localstack: String,
    pub dynamodb: String,
}

impl LocalEndpoints {
    pub fn from_env() -> Self {
        let port = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.to_owned());
        Self {
            localstack: format!("http://127.0.0.1:{}", port("LOCALSTACK_PORT", "4566")),
            dynamodb: format!("http://127.0.0.1:{}", port("DYNAMODB_PORT", "8000")),
        }
    }
}

/// Physical table names, as `template.yaml` passes them to every function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    pub main: String,
    pub audit: String,
}
