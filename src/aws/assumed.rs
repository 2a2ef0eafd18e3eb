//! Credentials for another account's role: the SDK's own AssumeRoleProvider (the
//! client's identity cache holds the session and refreshes it before it expires), with
//! each STS AssumeRole it makes counted in `iamwright_aws_requests_total` like every
//! other AWS call.

use aws_config::sts::AssumeRoleProvider;
use aws_credential_types::provider::{ProvideCredentials, future};

use crate::telemetry::Metrics;

pub struct Counted {
    inner: AssumeRoleProvider,
    metrics: Metrics,
}

impl Counted {
    pub fn new(inner: AssumeRoleProvider, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }
}

impl std::fmt::Debug for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Counted").field(&self.inner).finish()
    }
}

impl ProvideCredentials for Counted {
    /// One call is one AssumeRole request (the provider itself keeps nothing).
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let out = self.inner.provide_credentials().await;
            let outcome = if out.is_ok() { "success" } else { "error" };
            self.metrics.aws_request("sts", "AssumeRole", outcome);
            out
        })
    }
}
