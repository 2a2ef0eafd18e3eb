//! Thin wrappers over the AWS SDK: error classification, ownership tags, and a
//! metrics wrapper that every AWS call goes through.

mod error;
mod ownership;

pub use error::{AwsError, AwsErrorKind, Found};
pub use ownership::{
    OWNER_CLUSTER, OWNER_NAME, OWNER_NAMESPACE, Owner, Ownership, sync_tags, tag_diff, tag_map,
    to_tags,
};

use std::future::Future;

use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::OnceCell;

use crate::telemetry::Metrics;

/// The AWS clients the controllers share, and the account they act in.
#[derive(Clone)]
pub struct Aws {
    pub iam: aws_sdk_iam::Client,
    pub sts: aws_sdk_sts::Client,
    config: aws_config::SdkConfig,
    account: std::sync::Arc<OnceCell<String>>,
    metrics: Metrics,
}

impl Aws {
    /// Clients from the SDK's default chain (IRSA, Pod Identity, instance role,
    /// environment; `AWS_ENDPOINT_URL` reaches an emulator).
    pub async fn from_env(region: Option<String>, metrics: Metrics) -> Self {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = region {
            loader = loader.region(aws_config::Region::new(r));
        }
        let config = loader.load().await;
        Self {
            iam: aws_sdk_iam::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            config,
            account: Default::default(),
            metrics,
        }
    }

    /// An EC2 client for `region` (default: the operator's region).
    pub fn ec2(&self, region: Option<&str>) -> aws_sdk_ec2::Client {
        let mut b = aws_sdk_ec2::config::Builder::from(&self.config);
        if let Some(r) = region {
            b = b.region(aws_config::Region::new(r.to_string()));
        }
        aws_sdk_ec2::Client::from_conf(b.build())
    }

    /// The account id, from STS once, then cached.
    pub async fn account_id(&self) -> Result<String, AwsError> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .call(
                        "sts",
                        "GetCallerIdentity",
                        self.sts.get_caller_identity().send(),
                    )
                    .await?;
                out.account.ok_or_else(|| AwsError {
                    kind: AwsErrorKind::Other,
                    operation: "GetCallerIdentity",
                    code: "NoAccount".into(),
                    message: "STS returned no account id".into(),
                })
            })
            .await
            .cloned()
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
        let result = fut.await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(_) => "error",
        };
        self.metrics.aws_request(service, operation, outcome);
        result.map_err(|e| AwsError::from_sdk(operation, e))
    }
}
