//! Managed policies attached through `managedPolicyArns` are held to the denied
//! actions too: the policy's default version is read (GetPolicy + GetPolicyVersion)
//! and checked like a document in the spec, so `AdministratorAccess` cannot bypass
//! `--deny-action iam:*`. Documents are cached by ARN and version id: a version never
//! changes, so only the GetPolicy (which version is the default) is repeated.

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use crate::aws::Aws;
use crate::error::Error;
use crate::policy::{allowed_actions_matching, decode_aws_document};
use crate::reason::Reason;

/// Policy documents by (ARN, version id).
#[derive(Default)]
pub struct ManagedPolicyCache {
    documents: Mutex<HashMap<(String, String), Value>>,
}

impl ManagedPolicyCache {
    /// Refuse (GuardrailViolation, naming `field[i]`) the first of `arns` whose default
    /// version allows an action matching `deny`. A policy that does not exist is left
    /// to the attach call (which reports it).
    pub async fn check(
        &self,
        aws: &Aws,
        field: &str,
        arns: &[String],
        deny: &[String],
    ) -> Result<(), Error> {
        if deny.is_empty() {
            return Ok(());
        }
        for (i, arn) in arns.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let Some(doc) = self.document(aws, arn, &at).await? else {
                continue;
            };
            if let Some((_, message)) = allowed_actions_matching(&doc, arn, deny) {
                return Err(Error::at(
                    Reason::GuardrailViolation,
                    at,
                    format!(
                        "managed policy {arn} (its default version) {message}; attaching it would bypass the denied actions"
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn document(&self, aws: &Aws, arn: &str, at: &str) -> Result<Option<Value>, Error> {
        let Some(policy) = crate::aws::reads::get_policy(aws, arn).await? else {
            return Ok(None);
        };
        let Some(version) = policy.default_version_id else {
            return Ok(None);
        };
        let key = (arn.to_string(), version.clone());
        if let Some(doc) = self.documents.lock().expect("cache lock").get(&key) {
            return Ok(Some(doc.clone()));
        }
        let out = aws
            .call(
                "iam",
                "GetPolicyVersion",
                aws.iam
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(&version)
                    .send(),
            )
            .await?;
        let raw = out
            .policy_version
            .and_then(|v| v.document)
            .unwrap_or_default();
        let doc = decode_aws_document(&raw).map_err(|e| {
            Error::at(
                Reason::GuardrailViolation,
                at,
                format!("the document of managed policy {arn} cannot be read to check it against the denied actions: {e}"),
            )
        })?;
        self.documents
            .lock()
            .expect("cache lock")
            .insert(key, doc.clone());
        Ok(Some(doc))
    }
}
