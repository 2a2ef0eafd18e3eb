//! Reads more than one layer needs: the controllers and the trust model's guardrail
//! cache both read managed policies.

use aws_sdk_iam::types::Policy;

use super::{Aws, AwsError, Found};

/// A managed policy by ARN; None when it does not exist.
pub async fn get_policy(aws: &Aws, arn: &str) -> Result<Option<Policy>, AwsError> {
    let call = aws.iam.get_policy().policy_arn(arn);
    Ok(aws
        .call("iam", "GetPolicy", call.send())
        .await
        .found()?
        .and_then(|out| out.policy))
}
