//! Instance profiles, shared by IamRole (its own profile) and InstanceProfileBinding:
//! the read and the deletes ("gone is fine").

use std::collections::BTreeMap;

use super::{Aws, AwsError, Found, tag_map};

/// An instance profile as IAM holds it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Profile {
    pub arn: String,
    pub tags: BTreeMap<String, String>,
    pub roles: Vec<String>,
}

/// The instance profile of that name, if it exists.
pub async fn get(aws: &Aws, name: &str) -> Result<Option<Profile>, AwsError> {
    let call = aws.iam.get_instance_profile().instance_profile_name(name);
    let out = aws
        .call("iam", "GetInstanceProfile", call.send())
        .await
        .found()?;
    Ok(out.and_then(|o| o.instance_profile).map(|p| Profile {
        arn: p.arn.clone(),
        tags: tag_map(p.tags()),
        roles: p.roles().iter().map(|r| r.role_name.clone()).collect(),
    }))
}

pub async fn remove_role(aws: &Aws, profile: &str, role: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .remove_role_from_instance_profile()
        .instance_profile_name(profile)
        .role_name(role);
    aws.call("iam", "RemoveRoleFromInstanceProfile", call.send())
        .await
        .found()?;
    Ok(())
}

pub async fn delete(aws: &Aws, name: &str) -> Result<(), AwsError> {
    let call = aws
        .iam
        .delete_instance_profile()
        .instance_profile_name(name);
    aws.call("iam", "DeleteInstanceProfile", call.send())
        .await
        .found()?;
    Ok(())
}
