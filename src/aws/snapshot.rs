//! One account-wide view of IAM, shared by every object of every kind and taken at
//! most once per resync period: GetAccountAuthorizationDetails (roles with trust,
//! attachments, inline policies, tags, boundary and instance profiles; customer
//! managed policies with their versions' documents) plus ListRoles (the description
//! and session duration the details leave out). An object in sync is compared with it
//! and costs no read of its own unless it differs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_iam::types::{EntityType, ManagedPolicyDetail, RoleDetail};
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
}

/// The current snapshot, refreshed on demand by one caller while the others wait.
#[derive(Default)]
pub struct Cache {
    current: Mutex<Option<(Instant, Arc<Snapshot>)>>,
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
        let snap = Arc::new(take(aws).await?);
        *current = Some((Instant::now(), snap.clone()));
        Ok(snap)
    }

    /// Forget the snapshot (tests; a write the operator wants seen at once).
    pub async fn clear(&self) {
        *self.current.lock().await = None;
    }
}

/// Entities per page: small pages keep the operator's peak memory low (a page of
/// 1,000 roles and policies with their documents is megabytes of XML to hold and
/// parse at once), at a cost of one read per 200 entities per resync period.
const PAGE: i32 = 200;

async fn take(aws: &Aws) -> Result<Snapshot, AwsError> {
    let details = aws
        .iam
        .get_account_authorization_details()
        .filter(EntityType::Role)
        .filter(EntityType::LocalManagedPolicy)
        .max_items(PAGE);
    let pages = aws
        .pages(
            "iam",
            "GetAccountAuthorizationDetails",
            details.into_paginator().send(),
        )
        .await?;
    let listed = aws.iam.list_roles().max_items(PAGE);
    let listed = aws
        .pages("iam", "ListRoles", listed.into_paginator().send())
        .await?;
    let mut settings: HashMap<String, (Option<String>, Option<i32>)> = HashMap::new();
    for role in listed.iter().flat_map(|p| p.roles()) {
        settings.insert(
            role.role_name.clone(),
            (role.description.clone(), role.max_session_duration),
        );
    }
    let mut snap = Snapshot::default();
    for page in pages {
        for detail in page.role_detail_list.unwrap_or_default() {
            let Some(name) = detail.role_name.clone() else {
                continue;
            };
            let (description, max_session) = settings.remove(&name).unwrap_or_default();
            snap.roles.insert(
                name,
                RoleEntry {
                    detail,
                    description,
                    max_session,
                },
            );
        }
        for policy in page.policies.unwrap_or_default() {
            if let Some(arn) = policy.arn.clone() {
                snap.policies.insert(arn, policy);
            }
        }
    }
    Ok(snap)
}
