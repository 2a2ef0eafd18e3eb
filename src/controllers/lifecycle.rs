//! The life of the AWS resource an object manages, as every kind goes through it:
//! found or created, then claimed (observe), and the first steps of its deletion
//! (cleanup). Each kind passes its own AWS calls; the order of the steps, the events
//! and the messages are one for all kinds.

use std::collections::BTreeMap;
use std::future::Future;

use super::claim::{Claim, claim, held_by_existing};
use super::reconciler::{Managed, StatusFields};
use super::{Context, Error, key_of};
use crate::api::{
    DeletionPolicy, IamGroup, IamPolicy, IamRole, InstanceProfileBinding, ManagementPolicy,
};
use crate::aws::{AwsError, AwsErrorKind, Ownership};
use crate::reason::Reason;

/// The spec fields that say what the operator may do with an object's resource.
pub trait Lifecycle: Managed {
    fn management_policy(&self) -> ManagementPolicy;
    fn deletion_policy(&self) -> DeletionPolicy;
    /// `spec.adopt`: take over an existing resource without ownership tags.
    fn adopt(&self) -> bool;

    fn observe_only(&self) -> bool {
        self.management_policy() == ManagementPolicy::Observe
    }
}

macro_rules! lifecycle {
    ($($kind:ty),*) => {$(
        impl Lifecycle for $kind {
            fn management_policy(&self) -> ManagementPolicy {
                self.spec.management_policy
            }
            fn deletion_policy(&self) -> DeletionPolicy {
                self.spec.deletion_policy
            }
            fn adopt(&self) -> bool {
                self.spec.adopt
            }
        }
    )*};
}

lifecycle!(IamPolicy, IamRole, InstanceProfileBinding, IamGroup);

/// How observe looks for the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// Read it first, always.
    Read,
    /// Create it at once, with no read that would only answer NotFound, while the
    /// object never saw its resource (its status records no ARN).
    Create,
}

/// The resource an object looks for.
#[derive(Debug, Clone, Copy)]
pub struct Sought<'a> {
    /// `role`, `policy`, `instance profile`, `group`: for events and messages.
    pub what: &'static str,
    /// The AWS create call (`CreateRole`), for the message when it returns nothing.
    pub create_call: &'static str,
    /// The resource's AWS name.
    pub name: &'a str,
    pub first: First,
}

impl<'a> Sought<'a> {
    pub fn new(what: &'static str, create_call: &'static str, name: &'a str, first: First) -> Self {
        Self {
            what,
            create_call,
            name,
            first,
        }
    }
}

/// A resource as its create call returns it.
pub trait Arn {
    fn arn(&self) -> &str;
}

impl Arn for aws_sdk_iam::types::Role {
    fn arn(&self) -> &str {
        &self.arn
    }
}

impl Arn for aws_sdk_iam::types::Group {
    fn arn(&self) -> &str {
        &self.arn
    }
}

impl Arn for aws_sdk_iam::types::Policy {
    fn arn(&self) -> &str {
        self.arn.as_deref().unwrap_or_default()
    }
}

impl Arn for crate::aws::profiles::Profile {
    fn arn(&self) -> &str {
        &self.arn
    }
}

/// What observe found.
#[derive(Debug)]
pub enum Found<S, C> {
    /// The resource existed and the object's claim on it holds: as `claimed` saw it.
    Claimed(S),
    /// Created by this reconcile, exactly as the spec says: as the create returned it.
    Created(C),
}

/// A resource as observe found it: whether this reconcile just created it, and whether
/// it was seen in the shared view (the snapshot) rather than by reads of its own.
#[derive(Debug)]
pub struct Observation<S> {
    pub seen: S,
    pub created: bool,
    pub shared: bool,
}

impl<S> Observation<S> {
    /// Seen in the shared view, in sync.
    pub fn shared(seen: S) -> Self {
        Self {
            seen,
            created: false,
            shared: true,
        }
    }
}

/// Observe's create-or-adopt-then-claim: the resource as AWS holds it (`get`), created
/// when missing (`create`), and an existing one claimed (`claimed`: the ownership decision, see [`claim_of`], and the
/// resource observed). None: missing and not to be created (managementPolicy: Observe).
pub async fn find_or_create<K, E, C, S, GF, CF, AF>(
    obj: &K,
    ctx: &Context,
    sought: Sought<'_>,
    get: impl Fn() -> GF,
    create: impl FnOnce() -> CF,
    claimed: impl FnOnce(E) -> AF,
) -> Result<Option<Found<S, C>>, Error>
where
    K: Lifecycle,
    GF: Future<Output = Result<Option<E>, AwsError>>,
    C: Arn,
    CF: Future<Output = Result<Option<C>, AwsError>>,
    AF: Future<Output = Result<S, Error>>,
{
    let observe_only = obj.observe_only();
    let never_created = match sought.first {
        First::Read => false,
        First::Create => {
            let recorded = obj.status().and_then(|s| s.arn()).is_some();
            // No ARN recorded: this object never saw its resource (it may have waited
            // for a dependency). A create interrupted before its status write meets
            // EntityAlreadyExists and the claim, which finds it ours.
            // Held at a name taken by another resource: retried with a read (see
            // `held_by_existing`), never with the create that was refused.
            let held = obj
                .status()
                .is_some_and(|s| held_by_existing(s.conditions()));
            ctx.never_created(obj, recorded) && !held
        }
    };
    let existing = if never_created && !observe_only {
        None
    } else {
        get().await?
    };
    match existing {
        Some(found) => Ok(Some(Found::Claimed(claimed(found).await?))),
        None if observe_only => Ok(None),
        None => match create().await {
            Ok(Some(made)) => {
                if sought.first == First::Create {
                    ctx.created(obj);
                }
                let note = format!("created {} {}", sought.what, made.arn());
                ctx.event(obj, false, "Created", note).await;
                Ok(Some(Found::Created(made)))
            }
            Ok(None) => Err(Error::Waiting {
                field: None,
                reason: Reason::Creating,
                message: format!(
                    "{} returned no {} for {}",
                    sought.create_call, sought.what, sought.name
                ),
            }),
            Err(e) if e.kind == AwsErrorKind::AlreadyExists => {
                let found = get().await?.ok_or(e)?;
                Ok(Some(Found::Claimed(claimed(found).await?)))
            }
            Err(e) => Err(e.into()),
        },
    }
}

/// The object's claim on an existing resource `what` (e.g. `role arn:...`) whose
/// ownership is `ownership` (see [`claim`]), with an `Adopted` event when it takes the
/// resource over.
pub async fn claim_of<K: Lifecycle>(
    obj: &K,
    ctx: &Context,
    ownership: &Ownership,
    what: &str,
) -> Result<Claim, Error> {
    let gov = crate::trust::current();
    let claimed = claim(ownership, what, obj.adopt(), obj.observe_only(), || {
        gov.check_adopt(what)
    })?;
    if claimed == Claim::Adopt {
        ctx.event(obj, false, "Adopted", format!("adopted existing {what}"))
            .await;
    }
    Ok(claimed)
}

/// Cleanup's first step: whether the spec keeps `what` (e.g. `role x`) in AWS when the
/// object goes. An observed resource is never deleted (logged); `deletionPolicy:
/// Retain` keeps it (an event).
pub async fn kept<K: Lifecycle>(obj: &K, ctx: &Context, what: &str) -> bool {
    if obj.observe_only() {
        tracing::info!(object = %key_of(obj), resource = %what, "observe-only: nothing deleted in AWS");
        return true;
    }
    if obj.deletion_policy() == DeletionPolicy::Retain {
        let note = format!("{what} retained (deletionPolicy: Retain)");
        ctx.event(obj, false, "Retained", note).await;
        return true;
    }
    false
}

/// Cleanup's next step: the resource `found` (with its ownership tags) is deleted only
/// when it is this object's own; another's, or an untagged one, is left in place
/// (logged). None: nothing to delete.
pub fn owned<K: Lifecycle, E>(
    obj: &K,
    ctx: &Context,
    what: &str,
    found: Option<(E, BTreeMap<String, String>)>,
) -> Option<E> {
    let (resource, tags) = found?;
    if ctx.owner(obj).ownership(&tags) != Ownership::Ours {
        tracing::info!(object = %key_of(obj), resource = %what, "not owned by this object; left in place");
        return None;
    }
    Some(resource)
}

/// Cleanup's preamble, [`kept`] then [`owned`]: the resource to delete, read by `find`
/// (with its ownership tags) only when the spec lets it go. None: nothing to delete.
pub async fn to_delete<K: Lifecycle, E, F>(
    obj: &K,
    ctx: &Context,
    what: &str,
    find: impl FnOnce() -> F,
) -> Result<Option<E>, Error>
where
    F: Future<Output = Result<Option<(E, BTreeMap<String, String>)>, Error>>,
{
    if kept(obj, ctx, what).await {
        return Ok(None);
    }
    Ok(owned(obj, ctx, what, find().await?))
}
