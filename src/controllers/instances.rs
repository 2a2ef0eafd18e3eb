//! The EC2 side of an InstanceProfileBinding: which instances the spec targets, which
//! instance profile each one carries, and the association writes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::types::{Filter, IamInstanceProfileSpecification};

use crate::api::InstanceProfileBindingSpec;
use crate::aws::{Aws, AwsError};

/// Instance states a binding acts on: an instance in any other state (shutting-down,
/// terminated) cannot carry a profile any more.
pub const TARGET_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];
/// DescribeInstances takes at most 200 values per filter.
const IDS_PER_CALL: usize = 100;

/// The instances a spec targets, as EC2 sees them now.
#[derive(Debug, Default)]
pub struct Targets {
    /// Instances to carry the profile.
    pub live: BTreeSet<String>,
    /// Listed ids that cannot carry it, with why (unknown, terminated).
    pub not_found: BTreeMap<String, String>,
    /// Listed ids the namespace's IamScope does not let it bind (they lack its
    /// instanceTags), with why.
    pub not_permitted: BTreeMap<String, String>,
}

/// Keep only the targets that carry every one of `required` (an IamScope's
/// instanceTags). A listed id that lacks them is reported as not permitted; an instance
/// only the selector found is simply not targeted (the selector means "matching
/// instances this namespace may bind", and other tenants' instances stay unnamed).
pub async fn restrict(
    aws: &Aws,
    ec2: &Ec2,
    spec: &InstanceProfileBindingSpec,
    t: &mut Targets,
    required: &BTreeMap<String, String>,
) -> Result<(), AwsError> {
    if required.is_empty() || t.live.is_empty() {
        return Ok(());
    }
    let live: Vec<String> = t.live.iter().cloned().collect();
    let mut permitted = BTreeSet::new();
    for chunk in live.chunks(IDS_PER_CALL) {
        let mut filters: Vec<Filter> = required
            .iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
            .collect();
        filters.push(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(chunk.to_vec()))
                .build(),
        );
        permitted.extend(describe(aws, ec2, filters).await?.into_keys());
    }
    let tags: Vec<String> = required.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for id in live.iter().filter(|id| !permitted.contains(*id)) {
        t.live.remove(id);
        if spec.instance_ids.contains(id) {
            t.not_permitted.insert(
                id.clone(),
                format!(
                    "instance {id} lacks the tags {} that the namespace's IamScope requires of the instances it binds",
                    tags.join(", ")
                ),
            );
        }
    }
    Ok(())
}

/// Look up `spec.instanceIds` and `spec.instanceSelector`. Ids are looked up with an
/// `instance-id` filter rather than `InstanceIds`, because EC2 fails the whole call
/// with InvalidInstanceID.NotFound when one id is unknown; the filter just omits it.
pub async fn targets(
    aws: &Aws,
    ec2: &Ec2,
    spec: &InstanceProfileBindingSpec,
    region: &str,
) -> Result<Targets, AwsError> {
    let mut t = Targets::default();
    let wanted: BTreeSet<&String> = spec.instance_ids.iter().collect();
    let wanted: Vec<&String> = wanted.into_iter().collect();
    for chunk in wanted.chunks(IDS_PER_CALL) {
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(chunk.iter().map(|s| s.to_string()).collect()))
            .build();
        let found = describe(aws, ec2, vec![filter]).await?;
        for id in chunk {
            match found.get(*id) {
                Some(state) if TARGET_STATES.contains(&state.as_str()) => {
                    t.live.insert(id.to_string());
                }
                Some(state) => {
                    t.not_found.insert(
                        id.to_string(),
                        format!("instance {id} is {state} and cannot carry an instance profile"),
                    );
                }
                None => {
                    t.not_found.insert(
                        id.to_string(),
                        format!("instance {id} does not exist in {region}"),
                    );
                }
            }
        }
    }
    if let Some(sel) = &spec.instance_selector {
        let mut filters: Vec<Filter> = sel
            .tags
            .iter()
            .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
            .collect();
        filters.push(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(TARGET_STATES.iter().map(|s| s.to_string()).collect()))
                .build(),
        );
        for (id, state) in describe(aws, ec2, filters).await? {
            // The filter already says so; checked again in case an emulator ignores it.
            if TARGET_STATES.contains(&state.as_str()) {
                t.live.insert(id);
            }
        }
    }
    Ok(t)
}

/// instance id → state name of every instance matching `filters`.
async fn describe(
    aws: &Aws,
    ec2: &Ec2,
    filters: Vec<Filter>,
) -> Result<BTreeMap<String, String>, AwsError> {
    let mut found = BTreeMap::new();
    let mut token = None;
    loop {
        let out = aws
            .call(
                "ec2",
                "DescribeInstances",
                ec2.describe_instances()
                    .set_filters(Some(filters.clone()))
                    .set_next_token(token.clone())
                    .send(),
            )
            .await?;
        for i in out.reservations().iter().flat_map(|r| r.instances()) {
            if let Some(id) = i.instance_id() {
                let state = i
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default();
                found.insert(id.to_string(), state);
            }
        }
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(found),
        }
    }
}

/// One instance's association with an instance profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub id: String,
    pub instance_id: String,
    pub profile_arn: String,
    /// associating, associated or disassociating.
    pub state: String,
}

impl Association {
    /// Whether the association holds (or is about to hold) its profile.
    pub fn is_active(&self) -> bool {
        self.state == "associated" || self.state == "associating"
    }
}

/// Every association in the region that is not already over, by instance. EC2 cannot
/// filter by profile, and finding the instances that carry our profile without being
/// targeted any more needs them all.
pub async fn associations(aws: &Aws, ec2: &Ec2) -> Result<BTreeMap<String, Association>, AwsError> {
    let mut all = BTreeMap::new();
    let mut token = None;
    loop {
        let out = aws
            .call(
                "ec2",
                "DescribeIamInstanceProfileAssociations",
                ec2.describe_iam_instance_profile_associations()
                    .set_next_token(token.clone())
                    .send(),
            )
            .await?;
        for a in out.iam_instance_profile_associations() {
            let state = a
                .state
                .as_ref()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let (Some(id), Some(instance)) = (a.association_id.clone(), a.instance_id.clone())
            else {
                continue;
            };
            if state == "disassociated" {
                continue;
            }
            let assoc = Association {
                id,
                instance_id: instance.clone(),
                profile_arn: a
                    .iam_instance_profile
                    .as_ref()
                    .and_then(|p| p.arn.clone())
                    .unwrap_or_default(),
                state,
            };
            // An instance being moved from one profile to another can show both
            // associations for a moment: the active one is what counts.
            match all.get(&instance) {
                Some(existing) if Association::is_active(existing) => {}
                _ => {
                    all.insert(instance, assoc);
                }
            }
        }
        match out.next_token {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(all),
        }
    }
}

fn profile_spec(arn: &str) -> IamInstanceProfileSpecification {
    IamInstanceProfileSpecification::builder().arn(arn).build()
}

/// Whether EC2 refused a profile because it does not see it (or its role) yet: AWS
/// needs a few seconds after CreateInstanceProfile / AddRoleToInstanceProfile.
pub fn profile_not_ready(e: &AwsError) -> bool {
    let message = e.message.to_ascii_lowercase();
    (e.code == "InvalidParameterValue"
        && (message.contains("instance profile") || message.contains("iaminstanceprofile")))
        || (e.code == "NoSuchEntity" && message.contains("instance profile"))
}

/// Associate (or, with `replace`, re-point an existing association to) the profile,
/// retrying quietly for a few seconds while EC2 does not see the profile yet.
/// `Ok(false)`: EC2 still does not see the profile after the retries.
pub async fn associate(
    aws: &Aws,
    ec2: &Ec2,
    instance: &str,
    profile_arn: &str,
    replace: Option<&str>,
) -> Result<bool, AwsError> {
    let mut delay = Duration::from_secs(1);
    for attempt in 0..4 {
        let result = match replace {
            Some(association) => aws
                .call(
                    "ec2",
                    "ReplaceIamInstanceProfileAssociation",
                    ec2.replace_iam_instance_profile_association()
                        .association_id(association)
                        .iam_instance_profile(profile_spec(profile_arn))
                        .send(),
                )
                .await
                .map(|_| ()),
            None => aws
                .call(
                    "ec2",
                    "AssociateIamInstanceProfile",
                    ec2.associate_iam_instance_profile()
                        .instance_id(instance)
                        .iam_instance_profile(profile_spec(profile_arn))
                        .send(),
                )
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => return Ok(true),
            Err(e) if profile_not_ready(&e) => {
                tracing::debug!(instance, attempt, error = %e, "instance profile not visible to EC2 yet");
                if attempt < 3 {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

pub async fn disassociate(aws: &Aws, ec2: &Ec2, association: &str) -> Result<(), AwsError> {
    match aws
        .call(
            "ec2",
            "DisassociateIamInstanceProfile",
            ec2.disassociate_iam_instance_profile()
                .association_id(association)
                .send(),
        )
        .await
    {
        Err(e) if !e.is_not_found() => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::AwsErrorKind;

    fn err(code: &str, message: &str) -> AwsError {
        AwsError {
            kind: AwsErrorKind::Other,
            operation: "AssociateIamInstanceProfile",
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn recognises_a_profile_ec2_does_not_see_yet() {
        assert!(profile_not_ready(&err(
            "InvalidParameterValue",
            "Value (arn:aws:iam::1:instance-profile/x) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN"
        )));
        assert!(profile_not_ready(&err(
            "NoSuchEntity",
            "Instance profile x not found"
        )));
        assert!(!profile_not_ready(&err(
            "InvalidParameterValue",
            "Value (x) for parameter instanceId is invalid"
        )));
        assert!(!profile_not_ready(&err(
            "IncorrectState",
            "There is an existing association"
        )));
    }
}
