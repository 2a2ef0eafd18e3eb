//! Schemas the derive cannot give: a policy document is any JSON object.

use schemars::{Schema, SchemaGenerator, json_schema};

/// A policy document: any JSON object. Structural schemas need `type: object` with
/// preserved unknown fields; schemars' `{}` for a JSON value is refused by the apiserver.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true })
}

/// A map of name to policy document.
pub fn map_of_free_form_objects(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}
