//! The thin I/O of a binding reconcile: IAM reads and writes of its instance profile.
//! (EC2 reads and association writes live in `instances`.)

use std::collections::BTreeMap;

use super::plan::{Desired, Profile, ProfileWrite};
use crate::aws::{Aws, AwsError, Found, tag_map, to_tags};

pub use crate::aws::profiles::{delete as delete_profile, get as get_profile, remove_role};

pub async fn create_profile(aws: &Aws, d: &Desired) -> Result<Option<Profile>, AwsError> {
    let call = aws
        .iam
        .create_instance_profile()
        .instance_profile_name(&d.name)
        .path(&d.path)
        .set_tags(Some(to_tags(&d.tags)));
    let out = aws
        .call("iam", "CreateInstanceProfile", call.send())
        .await?;
    Ok(out.instance_profile.map(|p| Profile {
        arn: p.arn,
        tags: d.tags.clone(),
        roles: vec![],
    }))
}

pub async fn write(aws: &Aws, d: &Desired, w: &ProfileWrite) -> Result<(), AwsError> {
    let name = d.name.as_str();
    let iam = &aws.iam;
    match w {
        ProfileWrite::Untag(keys) => {
            let call = iam
                .untag_instance_profile()
                .instance_profile_name(name)
                .set_tag_keys(Some(keys.clone()));
            aws.call("iam", "UntagInstanceProfile", call.send()).await?;
        }
        ProfileWrite::Tag(tags) => {
            let call = iam
                .tag_instance_profile()
                .instance_profile_name(name)
                .set_tags(Some(to_tags(tags)));
            aws.call("iam", "TagInstanceProfile", call.send()).await?;
        }
        ProfileWrite::RemoveRole(role) => remove_role(aws, name, role).await?,
        ProfileWrite::AddRole => {
            let call = iam
                .add_role_to_instance_profile()
                .instance_profile_name(name)
                .role_name(&d.role);
            aws.call("iam", "AddRoleToInstanceProfile", call.send())
                .await?;
        }
    }
    Ok(())
}

/// The ownership tags of a role, if it exists.
pub async fn role_tags(
    aws: &Aws,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    let call = aws.iam.get_role().role_name(name);
    let out = aws.call("iam", "GetRole", call.send()).await.found()?;
    Ok(out.and_then(|o| o.role).map(|r| tag_map(r.tags())))
}
