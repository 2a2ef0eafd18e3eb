//! Thin wrappers over the AWS SDK: error classification, ownership tags, and a
//! metrics wrapper that every AWS call goes through.

mod assumed;
mod error;
mod fence;
mod ownership;
pub mod pace;
pub mod profiles;
pub mod reads;
pub mod snapshot;

pub use error::{AwsError, AwsErrorKind, Found};
pub use fence::Fence;
pub use ownership::{
    OWNER_CLUSTER, OWNER_NAME, OWNER_NAMESPACE, OWNER_UID, Owner, Ownership, sync_tags, tag_diff,
    tag_map, to_tags,
};

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_async::future::pagination_stream::PaginationStream;
use tokio::sync::OnceCell;

use crate::telemetry::Metrics;

/// The AWS clients the controllers share, and the account they act in.
#[derive(Clone)]
pub struct Aws {
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    config: aws_config::SdkConfig,
    identity: std::sync::Arc<OnceCell<Identity>>,
    fence: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<Fence>>>,
    budget: Option<std::sync::Arc<Budget>>,
    /// The HTTP client without the pacer: EC2 has rate limits of its own, per region,
    /// which IAM's throttling says nothing about.
    plain_http: aws_smithy_runtime_api::client::http::SharedHttpClient,
    /// The ceiling, for the pacers of assumed accounts.
    max_requests_per_second: u32,
    /// The pacers of assumed accounts by account id: one per account, whichever
    /// IamScopes reach it.
    pacers: std::sync::Arc<std::sync::Mutex<HashMap<String, std::sync::Arc<pace::Pacer>>>>,
    metrics: Metrics,
    /// The account-wide snapshot for resyncs (see `snapshot`).
    pub snapshot: std::sync::Arc<snapshot::Cache>,
}

/// The shared ceiling on AWS calls per second (a token bucket, GCRA).
type Budget = governor::DefaultDirectRateLimiter;

impl Aws {
    /// Clients from the SDK's default chain (IRSA, Pod Identity, instance role,
    /// environment; `AWS_ENDPOINT_URL` reaches an emulator).
    pub async fn from_env(
        region: Option<String>,
        max_requests_per_second: u32,
        metrics: Metrics,
    ) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts())
            // Standard mode: 3 attempts with jittered exponential backoff. Throttling
            // answers reach it only after the pacer (`pace`) has absorbed them for
            // `pace::PATIENCE`. (Adaptive mode's client-side limiter collapsed to its
            // floor rate under the fault suite's random throttling and held calls past
            // their timeout; the shared ceiling is `budget`, a plain token bucket.)
            .retry_config(RetryConfig::standard());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        // IAM and STS calls pace to the account's learned rate (see `pace`).
        let plain_http = pace::default_http_client();
        let pacer = pace::Pacer::new(
            "operator",
            ceiling(max_requests_per_second),
            metrics.clone(),
        );
        loader = loader.http_client(pacer.client(plain_http.clone()));
        let config = loader.load().await;
        Self {
            iam: aws_sdk_iam::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            config,
            identity: Default::default(),
            fence: Default::default(),
            budget: std::num::NonZeroU32::new(max_requests_per_second).map(|n| {
                std::sync::Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(
                    n,
                )))
            }),
            plain_http,
            max_requests_per_second,
            pacers: Default::default(),
            metrics,
            snapshot: Default::default(),
        }
    }

    /// Clients acting in another account through `account`'s role, assumed from this
    /// one's credentials with the SDK's own AssumeRoleProvider (the client's identity
    /// cache keeps the session and refreshes it before it expires; each AssumeRole is
    /// counted, see `assumed`). The rate budget, metrics and leader fence
    /// are shared; the identity and the account snapshot are the new account's own.
    pub async fn assume(&self, account: &crate::api::ScopeAccount) -> Aws {
        let mut provider = aws_config::sts::AssumeRoleProvider::builder(&account.role_arn)
            .session_name(account.session_name.as_deref().unwrap_or("iamwright"))
            .configure(&self.config);
        if let Some(id) = &account.external_id {
            provider = provider.external_id(id);
        }
        let provider = assumed::Counted::new(provider.build().await, self.metrics.clone());
        // The other account has a rate of its own to learn.
        let id = account_of_arn(&account.role_arn).unwrap_or(&account.role_arn);
        let pacer = self
            .pacers
            .lock()
            .expect("pacers lock")
            .entry(id.to_string())
            .or_insert_with(|| {
                pace::Pacer::new(
                    id,
                    ceiling(self.max_requests_per_second),
                    self.metrics.clone(),
                )
            })
            .clone();
        let config = self
            .config
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .http_client(pacer.client(self.plain_http.clone()))
            .build();
        Aws {
            iam: aws_sdk_iam::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            config,
            identity: Default::default(),
            fence: self.fence.clone(),
            budget: self.budget.clone(),
            plain_http: self.plain_http.clone(),
            max_requests_per_second: self.max_requests_per_second,
            pacers: self.pacers.clone(),
            metrics: self.metrics.clone(),
            snapshot: Default::default(),
        }
    }

    /// An EC2 client for `region` (default: the operator's region).
    pub fn ec2(&self, region: Option<&str>) -> aws_sdk_ec2::Client {
        let mut b =
            aws_sdk_ec2::config::Builder::from(&self.config).http_client(self.plain_http.clone());
        if let Some(r) = region {
            b = b.region(aws_config::Region::new(r.to_string()));
        }
        aws_sdk_ec2::Client::from_conf(b.build())
    }

    /// The account id, from STS once, then cached.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        Ok(self.identity().await?.account)
    }

    /// The partition the operator's credentials live in (`aws`, `aws-cn`,
    /// `aws-us-gov`, ...), read from the caller's ARN: every ARN the operator builds
    /// uses it.
    pub async fn partition(&self) -> Result<String, AwsError> {
        Ok(self.identity().await?.partition)
    }

    /// The IAM principal the operator's credentials belong to, as a trust policy names
    /// it: an assumed role's session ARN becomes the role's ARN.
    pub async fn principal(&self) -> Result<String, AwsError> {
        Ok(principal_of_caller(&self.identity().await?.arn))
    }

    /// The operator's region (`--region`, else the SDK's default chain), if any.
    pub fn region(&self) -> Option<String> {
        self.config.region().map(|r| r.to_string())
    }

    async fn identity(&self) -> Result<Identity, AwsError> {
        self.identity
            .get_or_try_init(|| async {
                let out = self
                    .call(
                        "sts",
                        "GetCallerIdentity",
                        self.sts.get_caller_identity().send(),
                    )
                    .await?;
                let account = out.account.ok_or_else(|| AwsError {
                    kind: AwsErrorKind::Other,
                    operation: "GetCallerIdentity",
                    code: "NoAccount".into(),
                    message: "STS returned no account id".into(),
                })?;
                let partition = out
                    .arn
                    .as_deref()
                    .and_then(partition_of_arn)
                    .unwrap_or("aws")
                    .to_string();
                Ok(Identity {
                    account,
                    partition,
                    arn: out.arn.unwrap_or_default(),
                })
            })
            .await
            .cloned()
    }

    /// The ARN STS answers GetCallerIdentity with when the request is signed with the
    /// given access key (not the operator's credentials): proof that a new key works
    /// before it is delivered. No SDK retry: the caller paces its own retries while
    /// IAM propagates the key. The secret is only used to sign; it is not kept.
    pub async fn caller_arn_as(&self, id: &str, secret: &str) -> Result<String, AwsError> {
        let creds =
            aws_credential_types::Credentials::new(id, secret, None, None, "iamwright-verify");
        let conf = aws_sdk_sts::config::Builder::from(&self.config)
            .credentials_provider(creds)
            .retry_config(RetryConfig::disabled())
            .build();
        let out = self
            .call(
                "sts",
                "GetCallerIdentity",
                aws_sdk_sts::Client::from_conf(conf)
                    .get_caller_identity()
                    .send(),
            )
            .await?;
        Ok(out.arn.unwrap_or_default())
    }

    /// From now on, AWS writes need the leadership confirmed (see `leader::Fence`).
    pub fn fence_writes(&self, fence: std::sync::Arc<Fence>) {
        let _ = self.fence.set(fence);
    }

    /// Run one AWS call, count it in `iamwright_aws_requests_total` and classify its error.
    pub async fn call<T, E, R>(
        &self,
        service: &'static str,
        operation: &'static str,
        fut: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        self.before(service, operation).await?;
        self.after(service, operation, fut.await)
    }

    /// Every page of a paginated read, through the SDK's own paginator
    /// (`into_paginator().send()`); each page is one counted, budgeted call. (The
    /// paginator's end costs one token of the rate budget and no request.)
    pub async fn pages<T, E, R>(
        &self,
        service: &'static str,
        operation: &'static str,
        pages: PaginationStream<Result<T, SdkError<E, R>>>,
    ) -> Result<Vec<T>, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let mut out = vec![];
        self.each_page(service, operation, pages, |page| out.push(page))
            .await?;
        Ok(out)
    }

    /// [`Aws::pages`], each page handed to `f` as it arrives rather than all kept:
    /// a large read (the account snapshot) then holds one page at a time.
    pub async fn each_page<T, E, R>(
        &self,
        service: &'static str,
        operation: &'static str,
        mut pages: PaginationStream<Result<T, SdkError<E, R>>>,
        mut f: impl FnMut(T),
    ) -> Result<(), AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        loop {
            self.before(service, operation).await?;
            match pages.next().await {
                Some(page) => f(self.after(service, operation, page)?),
                None => return Ok(()),
            }
        }
    }

    /// The leader fence (writes only) and the shared rate budget.
    async fn before(&self, service: &'static str, operation: &'static str) -> Result<(), AwsError> {
        if !is_read(operation)
            && let Some(fence) = self.fence.get()
            && !fence.holds()
        {
            self.metrics.aws_request(service, operation, "fenced");
            tracing::warn!(
                %operation,
                "leader fence: AWS write refused, the leader lease is not confirmed"
            );
            return Err(AwsError {
                kind: AwsErrorKind::Transient,
                operation,
                code: "LeadershipUnconfirmed".into(),
                message: "this replica cannot confirm it still holds the leader lease; AWS writes wait until it can".into(),
            });
        }
        if let Some(budget) = &self.budget {
            budget.until_ready().await;
        }
        Ok(())
    }

    /// Count the call's outcome and classify its error.
    fn after<T, E, R>(
        &self,
        service: &'static str,
        operation: &'static str,
        result: Result<T, SdkError<E, R>>,
    ) -> Result<T, AwsError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let result = result.map_err(|e| AwsError::from_sdk(operation, e));
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) if e.kind == AwsErrorKind::Throttled => "throttled",
            Err(e) if e.kind == AwsErrorKind::AccessDenied => "access_denied",
            Err(_) => "error",
        };
        self.metrics.aws_request(service, operation, outcome);
        result
    }
}

/// Reads change nothing: they need no fence.
pub fn is_read(operation: &str) -> bool {
    ["Get", "List", "Describe"]
        .iter()
        .any(|p| operation.starts_with(p))
}

/// Who the operator is in AWS.
#[derive(Debug, Clone)]
struct Identity {
    account: String,
    partition: String,
    arn: String,
}

/// The principal of GetCallerIdentity's ARN: `arn:P:sts::A:assumed-role/ROLE/SESSION`
/// is the role `arn:P:iam::A:role/ROLE` (STS does not show the role's path, so a role
/// with a path must be named without it); a user or role ARN is itself. moto answers
/// credentials it does not know with `arn:P:sts::A:user/moto`, taken as that user.
pub fn principal_of_caller(caller: &str) -> String {
    let f: Vec<&str> = caller.splitn(6, ':').collect();
    if let [_, partition, "sts", _, account, resource] = f.as_slice() {
        if let Some(rest) = resource.strip_prefix("assumed-role/") {
            let role = rest.split('/').next().unwrap_or_default();
            return format!("arn:{partition}:iam::{account}:role/{role}");
        }
        if let Some(user) = resource.strip_prefix("user/") {
            return format!("arn:{partition}:iam::{account}:user/{user}");
        }
    }
    caller.to_string()
}

/// The pacer's ceiling: `--aws-max-requests-per-second`, 0 for none.
fn ceiling(max_requests_per_second: u32) -> Option<f64> {
    (max_requests_per_second > 0).then_some(f64::from(max_requests_per_second))
}

/// The account field of an ARN (`arn:aws:iam::ACCOUNT:role/x`).
pub fn account_of_arn(arn: &str) -> Option<&str> {
    arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// The partition field of an ARN (`arn:PARTITION:...`).
pub fn partition_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(3, ':');
    match (parts.next(), parts.next()) {
        (Some("arn"), Some(p)) if !p.is_empty() => Some(p),
        _ => None,
    }
}

/// Every AWS call is bounded: a hung connection or endpoint can never hold a reconcile
/// (and its object's place in the queue) for longer than this. The answer to a request
/// on the wire gets 20 s (a read timeout, not an attempt timeout: the time an attempt
/// waits in its account's pacer for a slot is not the endpoint's fault, and with many
/// reconciles queued at a low account rate it can be several seconds), the whole call
/// 60 s.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(Duration::from_secs(20))
        .operation_timeout(Duration::from_secs(60))
        .build()
}

/// A config override that turns the SDK's automatic retries off for one call. Used for
/// creates whose duplicate cannot be recognised afterwards (CreateAccessKey): a retry
/// after a lost response would make a second key. The caller's recovery handles the
/// first instead.
pub fn no_retries() -> aws_sdk_iam::config::Builder {
    aws_sdk_iam::config::Builder::default().retry_config(RetryConfig::disabled())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Aws on a config that reaches nothing: the calls below never leave the process.
    fn offline() -> Aws {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        Aws {
            iam: aws_sdk_iam::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            config,
            identity: Default::default(),
            fence: Default::default(),
            budget: None,
            plain_http: pace::default_http_client(),
            max_requests_per_second: 0,
            pacers: Default::default(),
            metrics: Metrics::new(),
            snapshot: Default::default(),
        }
    }

    type NoError = SdkError<aws_sdk_iam::operation::get_user::GetUserError, ()>;

    #[tokio::test]
    async fn writes_wait_for_a_confirmed_leadership_reads_do_not() {
        let aws = offline();
        let fence = std::sync::Arc::new(Fence::default());
        aws.fence_writes(fence.clone());
        // Never confirmed (or expired): a write is refused before it is sent.
        let sent = std::sync::atomic::AtomicBool::new(false);
        let write = aws
            .call("iam", "PutRolePolicy", async {
                sent.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok::<(), NoError>(())
            })
            .await;
        let e = write.unwrap_err();
        assert_eq!(e.code, "LeadershipUnconfirmed");
        assert!(!sent.load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            aws.metrics
                .encode()
                .contains(r#"operation="PutRolePolicy",outcome="fenced""#)
        );
        // Reads need no fence.
        let read = aws
            .call("iam", "GetRole", async { Ok::<(), NoError>(()) })
            .await;
        assert!(read.is_ok());
        // Confirmed: the write goes through.
        fence.confirm_for(std::time::Duration::from_secs(10));
        let write = aws
            .call("iam", "PutRolePolicy", async { Ok::<(), NoError>(()) })
            .await;
        assert!(write.is_ok());
    }

    #[test]
    fn the_principal_of_an_assumed_role_session_is_the_role() {
        assert_eq!(
            principal_of_caller("arn:aws:sts::111122223333:assumed-role/iamwright/i-0abc"),
            "arn:aws:iam::111122223333:role/iamwright"
        );
        assert_eq!(
            principal_of_caller("arn:aws-cn:iam::111122223333:user/ops/bot"),
            "arn:aws-cn:iam::111122223333:user/ops/bot"
        );
        assert_eq!(
            principal_of_caller("arn:aws:sts::123456789012:user/moto"),
            "arn:aws:iam::123456789012:user/moto"
        );
    }

    #[test]
    fn partitions_come_from_the_caller_arn() {
        assert_eq!(
            partition_of_arn("arn:aws-cn:sts::123456789012:assumed-role/x/y"),
            Some("aws-cn")
        );
        assert_eq!(
            partition_of_arn("arn:aws-us-gov:iam::123456789012:user/u"),
            Some("aws-us-gov")
        );
        assert_eq!(partition_of_arn("not-an-arn"), None);
    }
}
