//! Condition bookkeeping (Ready / Reconciling / Stalled, keeping lastTransitionTime)
//! and the status patch (a JSON patch of the whole status subresource).

use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::api::Condition;
use crate::reason::Reason;

/// The field manager of every write the operator makes.
pub const MANAGER: &str = "iamwright";

/// What a reconcile concluded, as the three kstatus conditions express it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ready: bool,
    pub reconciling: bool,
    pub stalled: bool,
    pub reason: Reason,
    pub message: String,
}

impl Outcome {
    pub fn synced(message: impl Into<String>) -> Self {
        Self {
            ready: true,
            reconciling: false,
            stalled: false,
            reason: Reason::Synced,
            message: message.into(),
        }
    }
    /// Not ready, and the operator keeps at it: waiting for something, or retrying
    /// a failure (AWS errors and the like). kstatus tools see work in progress
    /// (`Reconciling=True`), not a silent in-between state.
    pub fn progressing(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            reconciling: true,
            stalled: false,
            reason,
            message: message.into(),
        }
    }
    pub fn stalled(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            reconciling: false,
            stalled: true,
            reason,
            message: message.into(),
        }
    }
}

fn status_word(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// The three conditions for `outcome`, keeping each one's lastTransitionTime when its
/// status did not change.
pub fn conditions(
    existing: &[Condition],
    generation: Option<i64>,
    outcome: &Outcome,
) -> Vec<Condition> {
    let now = now();
    let make = |type_: &str, on: bool, reason: &str, message: &str| {
        condition(existing, &now, generation, type_, on, reason, message)
    };
    let o = outcome;
    vec![
        make("Ready", o.ready, o.reason.as_str(), &o.message),
        make(
            "Reconciling",
            o.reconciling,
            if o.reconciling {
                o.reason.as_str()
            } else {
                "Idle"
            },
            if o.reconciling { &o.message } else { "" },
        ),
        make(
            "Stalled",
            o.stalled,
            if o.stalled {
                o.reason.as_str()
            } else {
                "Progressing"
            },
            if o.stalled { &o.message } else { "" },
        ),
    ]
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One condition, keeping its lastTransitionTime when its status did not change.
fn condition(
    existing: &[Condition],
    now: &str,
    generation: Option<i64>,
    type_: &str,
    on: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = status_word(on).to_string();
    let last = existing
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: last,
    }
}

/// A condition beside Ready / Reconciling / Stalled about one aspect of the spec (e.g.
/// `ActionsRecognized`). It never changes readiness: kstatus tools and the Argo CD
/// health script look only at the three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub type_: &'static str,
    /// The condition's status (`True` / `False`).
    pub status: bool,
    /// Whether this state is a problem worth one warning event when it first appears.
    /// `ActionsRecognized=False` is; `Drifted=True` is not (an observe-only object's
    /// drift is already its Ready reason, which has its own event).
    pub problem: bool,
    pub reason: &'static str,
    pub message: String,
}

/// The conditions for `extras`, keeping each one's lastTransitionTime when its status
/// did not change.
pub fn extra_conditions(
    existing: &[Condition],
    generation: Option<i64>,
    extras: &[Extra],
) -> Vec<Condition> {
    let now = now();
    extras
        .iter()
        .map(|e| {
            condition(
                existing, &now, generation, e.type_, e.status, e.reason, &e.message,
            )
        })
        .collect()
}

/// The extras that are `False` with another status or message than before: each is
/// worth one warning event (not one per resync).
pub fn new_problems<'a>(existing: &[Condition], extras: &'a [Extra]) -> Vec<&'a Extra> {
    extras
        .iter()
        .filter(|e| {
            let status = if e.status { "True" } else { "False" };
            e.problem
                && !existing
                    .iter()
                    .any(|c| c.type_ == e.type_ && c.status == status && c.message == e.message)
        })
        .collect()
}

/// Write `status` (a JSON patch of the whole status), unless it already is the object's status (an
/// unchanged status costs no write, so an object in sync causes no watch event).
pub async fn patch<K, S>(api: &Api<K>, obj: &K, current: Option<&S>, status: &S) -> kube::Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    write(api, obj, current, status, None).await.map(|_| ())
}

/// [`patch`], conditional on the object still being at `resource_version` (a 409
/// Conflict otherwise). Returns the new resourceVersion.
pub async fn patch_at<K, S>(
    api: &Api<K>,
    obj: &K,
    current: Option<&S>,
    status: &S,
    resource_version: &str,
) -> kube::Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    write(api, obj, current, status, Some(resource_version)).await
}

async fn write<K, S>(
    api: &Api<K>,
    obj: &K,
    current: Option<&S>,
    status: &S,
    resource_version: Option<&str>,
) -> kube::Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(status) {
        return Ok(resource_version.map(str::to_string));
    }
    let written = api
        .patch_status(
            &obj.name_any(),
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Json::<()>(replace_status(status, resource_version)?),
        )
        .await?;
    Ok(written.meta().resource_version.clone())
}

/// A JSON patch that sets the whole status (a field the operator no longer reports is
/// gone, as with server-side apply), conditional on `resource_version` when given: a
/// patched object whose resourceVersion differs from the stored one is a 409 Conflict.
/// Server-side apply of the status cost the API server twice the CPU (a YAML parse of
/// the body and a structured merge) and was a quarter of its work while objects converged.
fn replace_status<S: Serialize>(
    status: &S,
    resource_version: Option<&str>,
) -> kube::Result<json_patch::Patch> {
    let mut ops = vec![json!({"op": "add", "path": "/status", "value": status})];
    if let Some(rv) = resource_version {
        ops.push(json!({"op": "add", "path": "/metadata/resourceVersion", "value": rv}));
    }
    serde_json::from_value(Value::Array(ops)).map_err(kube::Error::SerdeError)
}

/// The Ready condition's (reason, message), to notice transitions.
pub fn ready_of(conditions: &[Condition]) -> Option<(&str, &str)> {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.reason.as_str(), c.message.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_conditions_keep_their_time_and_warn_once_per_change() {
        let bad = |m: &str| Extra {
            type_: "ActionsRecognized",
            status: false,
            problem: true,
            reason: "UnknownAction",
            message: m.into(),
        };
        let first = [bad("a")];
        assert_eq!(new_problems(&[], &first).len(), 1);
        let mut written = extra_conditions(&[], Some(1), &first);
        assert_eq!(written[0].status, "False");
        written[0].last_transition_time = "2020-01-01T00:00:00Z".into();
        // The same problem at the next resync: no new warning, same transition time.
        assert!(new_problems(&written, &first).is_empty());
        let again = extra_conditions(&written, Some(2), &[bad("b")]);
        assert_eq!(again[0].last_transition_time, "2020-01-01T00:00:00Z");
        assert_eq!(new_problems(&written, &[bad("b")]).len(), 1);
        let ok = Extra {
            status: true,
            problem: false,
            reason: "AllActionsRecognized",
            message: String::new(),
            ..bad("")
        };
        assert!(new_problems(&written, std::slice::from_ref(&ok)).is_empty());
        assert_eq!(extra_conditions(&written, Some(2), &[ok])[0].status, "True");
    }

    #[test]
    fn keeps_transition_time_while_status_holds() {
        let first = conditions(
            &[],
            Some(1),
            &Outcome::progressing(Reason::Creating, "creating"),
        );
        let mut aged = first.clone();
        for c in &mut aged {
            c.last_transition_time = "2020-01-01T00:00:00Z".into();
        }
        let again = conditions(&aged, Some(2), &Outcome::progressing(Reason::Updating, "x"));
        assert!(
            again
                .iter()
                .all(|c| c.last_transition_time == "2020-01-01T00:00:00Z")
        );
        assert!(again.iter().all(|c| c.observed_generation == Some(2)));
        let ready = conditions(&aged, Some(2), &Outcome::synced("ok"));
        let r = ready.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(r.status, "True");
        assert_ne!(r.last_transition_time, "2020-01-01T00:00:00Z");
        let s = ready.iter().find(|c| c.type_ == "Stalled").unwrap();
        assert_eq!(s.last_transition_time, "2020-01-01T00:00:00Z");
    }

    #[test]
    fn the_status_patch_replaces_the_whole_status_at_the_version_it_was_read() {
        let status = json!({"arn": "arn:aws:iam::1:role/r", "conditions": []});
        let at = serde_json::to_value(replace_status(&status, Some("42")).unwrap()).unwrap();
        assert_eq!(
            at,
            json!([
                {"op": "add", "path": "/status", "value": status},
                {"op": "add", "path": "/metadata/resourceVersion", "value": "42"},
            ])
        );
        let any = serde_json::to_value(replace_status(&status, None).unwrap()).unwrap();
        assert_eq!(
            any,
            json!([{"op": "add", "path": "/status", "value": status}])
        );
    }
}
