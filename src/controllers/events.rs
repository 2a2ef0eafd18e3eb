//! Events, created directly in `events.k8s.io/v1`, one object per event.
//!
//! kube-runtime's `Recorder` folds repeats into a series, and for that keeps every event
//! it published in a map for six minutes, scanning the map on every publish; the map
//! never shrinks. With 5,000 objects created together it was the operator's largest
//! allocation (17.7 MB of a 100 MB peak, measured with heaptrack). The operator already
//! publishes once per change and once per new problem, never per retry, so there are
//! no repeats to fold.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

/// The API server refuses a note longer than this (bytes).
const NOTE_MAX: usize = 1024;

/// Who publishes: the `reportingController` and `reportingInstance` of every event.
#[derive(Clone)]
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
        }
    }

    /// Create the event; returns once the API server has stored it.
    pub async fn publish(
        &self,
        regarding: ObjectReference,
        warning: bool,
        reason: &str,
        note: &str,
    ) -> kube::Result<()> {
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let event = build(
            &self.controller,
            &self.instance,
            regarding,
            warning,
            reason,
            note,
        );
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &event)
            .await
            .map(|_| ())
    }
}

fn build(
    controller: &str,
    instance: &str,
    regarding: ObjectReference,
    warning: bool,
    reason: &str,
    note: &str,
) -> Event {
    Event {
        metadata: ObjectMeta {
            // `<object>.<time><random>`, the shape client-go uses (the API server takes
            // no generateName ending in a dot). The object's part is cut so the name
            // stays within the 253 characters of a name.
            name: Some(format!(
                "{}.{:x}{:04x}",
                truncate(regarding.name.as_deref().unwrap_or(controller), 220),
                k8s_openapi::jiff::Timestamp::now().as_nanosecond(),
                rand::random::<u16>()
            )),
            namespace: regarding.namespace.clone(),
            ..Default::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some("Reconcile".into()),
        reason: Some(reason.to_string()),
        note: Some(truncate(note, NOTE_MAX)),
        type_: Some(if warning { "Warning" } else { "Normal" }.into()),
        reporting_controller: Some(controller.to_string()),
        reporting_instance: Some(instance.to_string()),
        regarding: Some(regarding),
        ..Default::default()
    }
}

/// At most `max` bytes, cut at a character boundary.
fn truncate(note: &str, max: usize) -> String {
    if note.len() <= max {
        return note.to_string();
    }
    let mut end = max;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_its_object_and_keeps_to_the_note_limit() {
        let regarding = ObjectReference {
            kind: Some("IamRole".into()),
            name: Some("app".into()),
            namespace: Some("team".into()),
            ..Default::default()
        };
        let long = "é".repeat(600);
        let e = build("iamwright", "pod-1", regarding, true, "AwsError", &long);
        let name = e.metadata.name.unwrap();
        assert!(name.starts_with("app.") && name.len() > 10, "{name}");
        assert_eq!(e.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        let note = e.note.unwrap();
        assert!(
            note.len() <= NOTE_MAX && note.len() > NOTE_MAX - 2,
            "{}",
            note.len()
        );
        assert!(long.starts_with(&note));
        let regarding = ObjectReference {
            name: Some("n".repeat(253)),
            ..Default::default()
        };
        let e = build("iamwright", "pod-1", regarding, false, "Created", "x");
        assert!(e.metadata.name.unwrap().len() <= 253);
    }
}
