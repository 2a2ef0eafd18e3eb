//! The EC2 side of an InstanceProfileBinding: which instances the spec targets, which
//! instance profile each one carries, and the association writes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::types::IamInstanceProfileSpecification;
use tokio::sync::Mutex;

use crate::api::InstanceProfileBindingSpec;
use crate::aws::{Aws, AwsError};

/// Instance states a binding acts on: an instance in any other state (shutting-down,
/// terminated) cannot carry a profile any more.
pub const TARGET_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

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

/// One region's instances and associations, read once per `--instance-resync-interval`
/// and shared by every binding of that region: the EC2 reads per tick do not grow
/// with the number of bindings.
#[derive(Debug, Default)]
pub struct RegionView {
    /// Every instance of the region: id → (state name, tags).
    pub instances: BTreeMap<String, (String, BTreeMap<String, String>)>,
    /// Every association not already over, by instance.
    pub associations: BTreeMap<String, Association>,
}

/// A region's view and when it was read; locked while it is read anew.
type Slot = Arc<Mutex<Option<(Instant, Arc<RegionView>)>>>;

/// The regions' views, each refreshed by one reader while the others wait.
#[derive(Default)]
pub struct Views {
    regions: std::sync::Mutex<HashMap<String, Slot>>,
}

impl Views {
    /// The region's view, read anew when older than `max_age`.
    pub async fn get(
        &self,
        aws: &Aws,
        ec2: &Ec2,
        region: &str,
        max_age: Duration,
    ) -> Result<Arc<RegionView>, AwsError> {
        let slot = self.slot(region);
        let mut current = slot.lock().await;
        if let Some((at, view)) = current.as_ref()
            && at.elapsed() < max_age
        {
            return Ok(view.clone());
        }
        let view = Arc::new(RegionView {
            instances: describe_all(aws, ec2).await?,
            associations: associations(aws, ec2).await?,
        });
        *current = Some((Instant::now(), view.clone()));
        Ok(view)
    }

    /// After a binding's own association writes it re-reads the associations; the
    /// view takes them, so the next binding sees that change without a read of its own.
    pub async fn update_associations(
        &self,
        region: &str,
        associations: BTreeMap<String, Association>,
    ) {
        let slot = self.slot(region);
        let mut current = slot.lock().await;
        if let Some((at, view)) = current.as_ref() {
            let instances = view.instances.clone();
            *current = Some((
                *at,
                Arc::new(RegionView {
                    instances,
                    associations,
                }),
            ));
        }
    }

    fn slot(&self, region: &str) -> Slot {
        let mut regions = self.regions.lock().expect("ec2 views lock");
        regions.entry(region.to_string()).or_default().clone()
    }
}

/// Keep only the targets that carry every one of `required` (an IamScope's
/// instanceTags). A listed id that lacks them is reported as not permitted; an instance
/// only the selector found is simply not targeted (the selector means "matching
/// instances this namespace may bind", and other tenants' instances stay unnamed).
pub fn restrict(
    view: &RegionView,
    spec: &InstanceProfileBindingSpec,
    t: &mut Targets,
    required: &BTreeMap<String, String>,
) {
    if required.is_empty() {
        return;
    }
    let tags: Vec<String> = required.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let permitted = |id: &String| {
        view.instances
            .get(id)
            .is_some_and(|(_, have)| carries(have, required))
    };
    let refused: Vec<String> = t.live.iter().filter(|id| !permitted(id)).cloned().collect();
    for id in refused {
        t.live.remove(&id);
        if spec.instance_ids.contains(&id) {
            t.not_permitted.insert(
                id.clone(),
                format!(
                    "instance {id} lacks the tags {} that the namespace's IamScope requires of the instances it binds",
                    tags.join(", ")
                ),
            );
        }
    }
}

fn carries(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

/// The instances `spec.instanceIds` and `spec.instanceSelector` target in the view.
/// Pure: every case is a unit test.
pub fn targets(view: &RegionView, spec: &InstanceProfileBindingSpec, region: &str) -> Targets {
    let mut t = Targets::default();
    for id in &spec.instance_ids {
        match view.instances.get(id) {
            Some((state, _)) if TARGET_STATES.contains(&state.as_str()) => {
                t.live.insert(id.clone());
            }
            Some((state, _)) => {
                t.not_found.insert(
                    id.clone(),
                    format!("instance {id} is {state} and cannot carry an instance profile"),
                );
            }
            None => {
                t.not_found.insert(
                    id.clone(),
                    format!("instance {id} does not exist in {region}"),
                );
            }
        }
    }
    if let Some(sel) = &spec.instance_selector {
        for (id, (state, tags)) in &view.instances {
            if TARGET_STATES.contains(&state.as_str()) && carries(tags, &sel.tags) {
                t.live.insert(id.clone());
            }
        }
    }
    t
}

/// Every instance of the region: id → (state name, tags), through the SDK's paginator.
async fn describe_all(
    aws: &Aws,
    ec2: &Ec2,
) -> Result<BTreeMap<String, (String, BTreeMap<String, String>)>, AwsError> {
    let pages = ec2
        .describe_instances()
        .max_results(1000)
        .into_paginator()
        .send();
    let pages = aws.pages("ec2", "DescribeInstances", pages).await?;
    let mut found = BTreeMap::new();
    for i in pages
        .iter()
        .flat_map(|p| p.reservations())
        .flat_map(|r| r.instances())
    {
        let Some(id) = i.instance_id() else {
            continue;
        };
        let state = i
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default();
        let tags = i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        found.insert(id.to_string(), (state, tags));
    }
    Ok(found)
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
    let pages = ec2
        .describe_iam_instance_profile_associations()
        .max_results(1000)
        .into_paginator()
        .send();
    let pages = aws
        .pages("ec2", "DescribeIamInstanceProfileAssociations", pages)
        .await?;
    let mut all = BTreeMap::new();
    for a in pages
        .iter()
        .flat_map(|p| p.iam_instance_profile_associations())
    {
        let state = a
            .state
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        let (Some(id), Some(instance)) = (a.association_id.clone(), a.instance_id.clone()) else {
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
    Ok(all)
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

    fn view() -> RegionView {
        let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        RegionView {
            instances: BTreeMap::from([
                (
                    "i-1".into(),
                    ("running".into(), tags(&[("app", "web"), ("team", "a")])),
                ),
                ("i-2".into(), ("terminated".into(), tags(&[("app", "web")]))),
                ("i-3".into(), ("stopped".into(), tags(&[("app", "web")]))),
                ("i-4".into(), ("running".into(), tags(&[("app", "db")]))),
            ]),
            associations: BTreeMap::new(),
        }
    }

    fn spec(v: serde_json::Value) -> InstanceProfileBindingSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn targets_come_from_the_shared_view() {
        let s = spec(
            serde_json::json!({"roleName": "r", "instanceIds": ["i-2", "i-9", "i-4"],
            "instanceSelector": {"tags": {"app": "web"}}}),
        );
        let t = targets(&view(), &s, "eu-west-1");
        assert_eq!(
            t.live,
            BTreeSet::from(["i-1".into(), "i-3".into(), "i-4".into()])
        );
        assert!(t.not_found["i-2"].contains("is terminated"));
        assert!(t.not_found["i-9"].contains("does not exist in eu-west-1"));
        // A scope's instance tags: a listed id without them is NotPermitted, an
        // instance only the selector found is simply left out.
        let mut t = t;
        let required = BTreeMap::from([("team".to_string(), "a".to_string())]);
        restrict(&view(), &s, &mut t, &required);
        assert_eq!(t.live, BTreeSet::from(["i-1".into()]));
        assert_eq!(t.not_permitted.keys().collect::<Vec<_>>(), vec!["i-4"]);
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
