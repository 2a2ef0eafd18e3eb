//! One account-wide view of IAM, shared by every object of every kind and taken at
//! most once per resync period: GetAccountAuthorizationDetails (roles with trust,
//! attachments, inline policies, tags, boundary and instance profiles; customer
//! managed policies with their versions' documents; groups with their attached and
//! inline policies) plus ListRoles (the description and session duration the details
//! leave out). An object in sync is compared with it
//! and costs no read of its own unless it differs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_iam::types::{EntityType, GroupDetail, ManagedPolicyDetail, RoleDetail};
use tokio::sync::Mutex;

use super::{Aws, AwsError};

/// A role as the snapshot shows it.
#[derive(Debug, Clone)]
pub struct RoleEntry {
    pub detail: RoleDetail,
    pub description: Option<String>,
    pub max_session: Option<i32>,
}

/// The account at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub roles: HashMap<String, RoleEntry>,
    /// Customer-managed policies by ARN.
    pub policies: HashMap<String, ManagedPolicyDetail>,
    /// Groups by name (their members are not in the details).
    pub groups: HashMap<String, GroupDetail>,
}

/// The current snapshot, refreshed on demand by one caller while the others wait, and
/// what this process has seen of the account since that snapshot began.
#[derive(Default)]
pub struct Cache {
    current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// Entities (by `role/<name>` or policy ARN) this process wrote or read in sync
    /// since the current snapshot began, with the fingerprint of the state they were
    /// in sync with. A snapshot taken in the middle of a converge lacks the entities
    /// created after it; this knowledge, newer than the snapshot, stands in for their
    /// entries instead of a read of their own. Emptied of what is older than each new
    /// snapshot, so it holds only what a converge wrote within one resync period.
    seen: std::sync::Mutex<HashMap<String, (Instant, u64)>>,
}

impl Cache {
    /// The snapshot, taken anew when older than `max_age`.
    pub async fn get(&self, aws: &Aws, max_age: Duration) -> Result<Arc<Snapshot>, AwsError> {
        // Held across the read: concurrent reconciles wait for one read, not each make one.
        let mut current = self.current.lock().await;
        if let Some((at, snap)) = current.as_ref()
            && at.elapsed() < max_age
        {
            return Ok(snap.clone());
        }
        let began = Instant::now();
        let snap = Arc::new(take(aws).await?);
        self.forget_seen_before(began);
        *current = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }

    /// Record that `entity` was just written or read in sync with the state whose
    /// fingerprint is `fingerprint` (see [`fingerprint`]).
    pub fn saw_in_sync(&self, entity: &str, fingerprint: u64) {
        self.seen_lock()
            .insert(entity.to_string(), (Instant::now(), fingerprint));
    }

    /// Whether `entity` was seen in sync with the state of `fingerprint` since the
    /// current snapshot began: as good as a snapshot entry that matches.
    pub fn seen_in_sync(&self, entity: &str, fingerprint: u64) -> bool {
        self.seen_lock()
            .get(entity)
            .is_some_and(|(_, f)| *f == fingerprint)
    }

    /// What was seen before a snapshot began is in it, or older than it.
    fn forget_seen_before(&self, began: Instant) {
        self.seen_lock().retain(|_, (at, _)| *at >= began);
    }

    fn seen_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, u64)>> {
        self.seen.lock().expect("snapshot seen lock")
    }
}

/// The fingerprint of a desired state (its `Debug` form: every field, documents
/// included, in a stable order) for [`Cache::saw_in_sync`]; only ever compared within
/// one process.
pub fn fingerprint(desired: &impl std::fmt::Debug) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{desired:?}").hash(&mut h);
    h.finish()
}

/// Entities per page: small pages keep the operator's peak memory low (a page of
/// 1,000 roles and policies with their documents is megabytes of XML to hold and
/// parse at once), at a cost of one read per 200 entities per resync period.
const PAGE: i32 = 200;

async fn take(aws: &Aws) -> Result<Snapshot, AwsError> {
    // ListRoles first: its few fields per role are kept until the details arrive.
    let mut settings: HashMap<String, (Option<String>, Option<i32>)> = HashMap::new();
    let listed = aws.iam.list_roles().max_items(PAGE);
    aws.each_page("iam", "ListRoles", listed.into_paginator().send(), |page| {
        for role in page.roles {
            settings.insert(
                role.role_name,
                (role.description, role.max_session_duration),
            );
        }
    })
    .await?;
    let mut snap = Snapshot::default();
    // Roles and policies in a listing each: where pages are not kept small (moto answers
    // the whole account in one page whatever MaxItems says) half as much XML is held and
    // parsed at once; against AWS it costs one page more per resync period. Groups are
    // few and small, and ride with the roles (no listing of their own).
    for entities in [
        &[EntityType::Role, EntityType::Group][..],
        &[EntityType::LocalManagedPolicy],
    ] {
        let details = aws
            .iam
            .get_account_authorization_details()
            .set_filter(Some(entities.to_vec()))
            .max_items(PAGE);
        aws.each_page(
            "iam",
            "GetAccountAuthorizationDetails",
            details.into_paginator().send(),
            |page| {
                for detail in page.role_detail_list.unwrap_or_default() {
                    let Some(name) = detail.role_name.clone() else {
                        continue;
                    };
                    let (description, max_session) = settings.remove(&name).unwrap_or_default();
                    let detail = compact_role(detail);
                    snap.roles.insert(
                        name,
                        RoleEntry {
                            detail,
                            description,
                            max_session,
                        },
                    );
                }
                for group in page.group_detail_list.unwrap_or_default() {
                    if let Some(name) = group.group_name.clone() {
                        snap.groups.insert(name, group);
                    }
                }
                for policy in page.policies.unwrap_or_default() {
                    if let Some(arn) = policy.arn.clone() {
                        snap.policies.insert(arn, compact_policy(policy));
                    }
                }
            },
        )
        .await?;
    }
    Ok(snap)
}

/// Only what the plans compare is kept (the snapshot is held for a whole resync
/// period, for every role of the account): the role's own instance profile (named as
/// the role) with its roles' names, not their documents; no dates or last use.
fn compact_role(mut r: RoleDetail) -> RoleDetail {
    let name = r.role_name.clone();
    if let Some(profiles) = r.instance_profile_list.as_mut() {
        profiles.retain(|p| Some(&p.instance_profile_name) == name.as_ref());
        for p in profiles.iter_mut() {
            for role in p.roles.iter_mut() {
                role.assume_role_policy_document = None;
                role.description = None;
                role.tags = None;
                role.role_last_used = None;
                role.permissions_boundary = None;
            }
        }
    }
    r.role_last_used = None;
    r.create_date = None;
    r.path = None;
    r
}

/// Only the default version's document is compared; the other versions (up to four
/// more documents) are dropped.
fn compact_policy(mut p: ManagedPolicyDetail) -> ManagedPolicyDetail {
    if let Some(versions) = p.policy_version_list.as_mut() {
        versions.retain(|v| v.is_default_version);
    }
    p.description = None;
    p.create_date = None;
    p.update_date = None;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::types::{InstanceProfile, PolicyVersion, Role};
    use aws_smithy_types::DateTime;

    fn role(name: &str) -> Role {
        Role::builder()
            .path("/")
            .role_name(name)
            .role_id("AROA")
            .arn(format!("arn:aws:iam::123456789012:role/{name}"))
            .create_date(DateTime::from_secs(0))
            .assume_role_policy_document("%7B%7D")
            .build()
            .expect("role")
    }

    fn profile(name: &str) -> InstanceProfile {
        InstanceProfile::builder()
            .path("/")
            .instance_profile_name(name)
            .instance_profile_id("AIPA")
            .arn(format!("arn:aws:iam::123456789012:instance-profile/{name}"))
            .create_date(DateTime::from_secs(0))
            .roles(role("app"))
            .build()
            .expect("profile")
    }

    #[test]
    fn what_was_seen_counts_for_its_own_state_until_a_newer_snapshot_begins() {
        let cache = Cache::default();
        let (a, b) = (fingerprint(&("role", 1)), fingerprint(&("role", 2)));
        assert_ne!(a, b);
        cache.saw_in_sync("role/old", a);
        let began = Instant::now();
        cache.saw_in_sync("role/new", a);
        assert!(cache.seen_in_sync("role/old", a));
        // Another desired state (a referenced policy's ARN changed): not seen in sync.
        assert!(!cache.seen_in_sync("role/new", b));
        assert!(!cache.seen_in_sync("role/other", a));
        cache.forget_seen_before(began);
        assert!(
            !cache.seen_in_sync("role/old", a),
            "the new snapshot has it"
        );
        assert!(
            cache.seen_in_sync("role/new", a),
            "seen during the snapshot"
        );
    }

    #[test]
    fn compaction_keeps_what_the_plans_compare() {
        let detail = RoleDetail::builder()
            .role_name("app")
            .arn("arn:aws:iam::123456789012:role/app")
            .assume_role_policy_document("%7B%7D")
            .instance_profile_list(profile("app"))
            .instance_profile_list(profile("someone-elses"))
            .build();
        let r = compact_role(detail);
        // The role's own profile stays, with its roles' names and not their documents.
        assert_eq!(r.instance_profile_list().len(), 1);
        let own = &r.instance_profile_list()[0];
        assert_eq!(own.instance_profile_name, "app");
        assert_eq!(own.roles[0].role_name, "app");
        assert_eq!(own.roles[0].assume_role_policy_document, None);
        assert_eq!(r.assume_role_policy_document.as_deref(), Some("%7B%7D"));

        let version = |id: &str, default| {
            PolicyVersion::builder()
                .version_id(id)
                .is_default_version(default)
                .document("%7B%7D")
                .build()
        };
        let p = compact_policy(
            ManagedPolicyDetail::builder()
                .arn("arn:aws:iam::123456789012:policy/p")
                .default_version_id("v2")
                .policy_version_list(version("v1", false))
                .policy_version_list(version("v2", true))
                .build(),
        );
        let kept: Vec<_> = p
            .policy_version_list()
            .iter()
            .map(|v| v.version_id())
            .collect();
        assert_eq!(kept, vec![Some("v2")]);
    }
}
