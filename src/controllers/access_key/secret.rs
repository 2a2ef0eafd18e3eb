//! The Secret that carries a key: its rendering, what an existing one holds, and the
//! write. The secret access key lives in [`SecretValue`], which cannot be printed.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api::IamUserAccessKey;
use crate::status::MANAGER;

pub const ID_KEY: &str = "AWS_ACCESS_KEY_ID";
pub const SECRET_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const CREDENTIALS_KEY: &str = "credentials";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "iamwright");
/// A digest of id and secret, so a hand edit of the secret value is noticed. It sits
/// on the Secret itself, readable only by those who can read the secret anyway.
pub const FINGERPRINT: &str = "iamwright.dev/key-sha256";

/// A secret access key. Its `Debug` is redacted and it has no `Display`, so neither a
/// log line, an event, a status nor an error message can carry it by accident; the
/// only way out is [`SecretValue::expose`], used when the Secret is rendered (and to
/// sign the STS request that verifies a new key).
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    /// Only to render the Secret and to sign the key's verification request.
    pub(super) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

/// An access key with its secret.
#[derive(Debug)]
pub struct KeyMaterial {
    pub id: String,
    pub secret: SecretValue,
}

/// The Secret's name for an object.
pub fn secret_name(k: &IamUserAccessKey) -> String {
    k.spec.secret_name.clone().unwrap_or_else(|| k.name_any())
}

fn fingerprint(key: &KeyMaterial) -> String {
    let mut h = Sha256::new();
    h.update(key.id.as_bytes());
    h.update(b"\n");
    h.update(key.secret.expose().as_bytes());
    hex::encode(h.finalize())
}

/// The shared-credentials file with one profile.
fn credentials_file(key: &KeyMaterial, profile: &str) -> String {
    format!(
        "[{profile}]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        key.id,
        key.secret.expose()
    )
}

/// The Secret for `key`: Opaque, controlled by the object (so the garbage collector
/// removes it with the object), labelled as iamwright's and nothing else.
pub fn render(k: &IamUserAccessKey, name: &str, key: &KeyMaterial) -> Secret {
    let owner = OwnerReference {
        api_version: IamUserAccessKey::api_version(&()).into_owned(),
        kind: IamUserAccessKey::kind(&()).into_owned(),
        name: k.name_any(),
        uid: k.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let data = BTreeMap::from([
        (ID_KEY.to_string(), ByteString(key.id.clone().into_bytes())),
        (
            SECRET_KEY.to_string(),
            ByteString(key.secret.expose().as_bytes().to_vec()),
        ),
        (
            CREDENTIALS_KEY.to_string(),
            ByteString(credentials_file(key, &k.spec.credentials_profile).into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: k.namespace(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                FINGERPRINT.to_string(),
                fingerprint(key),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// What the Secret of the object holds now.
pub enum Observed {
    Missing,
    /// A Secret of that name that this object does not control: never overwritten.
    NotOurs,
    Ours {
        /// The key it holds, when id, secret and fingerprint agree (else it was edited).
        key: Option<KeyMaterial>,
        /// The `AWS_ACCESS_KEY_ID` it shows, edited or not.
        shown_id: Option<String>,
        /// Everything matches what [`render`] makes for `key`: no write needed.
        up_to_date: bool,
    },
}

/// The `AWS_ACCESS_KEY_ID` a Secret shows (any Secret: observe-only reads hand-made ones).
pub fn shown_id(s: &Secret) -> Option<String> {
    text(s, ID_KEY)
}

fn text(s: &Secret, k: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(k)
        .and_then(|b| String::from_utf8(b.0.clone()).ok())
}

/// Classify an existing Secret (or its absence) for object `k`.
pub fn observe(k: &IamUserAccessKey, name: &str, existing: Option<Secret>) -> Observed {
    let Some(s) = existing else {
        return Observed::Missing;
    };
    let controlled = s
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == k.uid().as_ref());
    if !controlled {
        return Observed::NotOurs;
    }
    let shown_id = text(&s, ID_KEY);
    let key = match (shown_id.clone(), text(&s, SECRET_KEY)) {
        (Some(id), Some(secret)) => Some(KeyMaterial {
            id,
            secret: SecretValue::new(secret),
        }),
        _ => None,
    };
    let key = key.filter(|key| {
        s.annotations().get(FINGERPRINT).map(String::as_str) == Some(fingerprint(key).as_str())
    });
    let up_to_date = key.as_ref().is_some_and(|key| {
        let want = render(k, name, key);
        let data_ok = want.data.as_ref().is_some_and(|d| {
            d.iter()
                .all(|(k, v)| s.data.as_ref().and_then(|h| h.get(k)) == Some(v))
        });
        data_ok
            && s.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            && s.type_.as_deref() == Some("Opaque")
    });
    Observed::Ours {
        key,
        shown_id,
        up_to_date,
    }
}

/// Create or replace the Secret's fields with server-side apply.
pub async fn write(api: &Api<Secret>, secret: &Secret) -> kube::Result<()> {
    let name = secret.name_any();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(secret),
    )
    .await?;
    Ok(())
}

/// Ask the API server whether the Secret could be written now — name, admission
/// policies, quotas — with a server-side dry run of the same apply and a placeholder
/// key. Done before CreateAccessKey: a Secret that can never be written must not
/// cost a key per retry.
pub async fn check_writable(
    api: &Api<Secret>,
    k: &IamUserAccessKey,
    name: &str,
) -> kube::Result<()> {
    let placeholder = KeyMaterial {
        id: "AKIADRYRUNPLACEHOLDER".into(),
        secret: SecretValue::new("dry-run-placeholder".into()),
    };
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force().dry_run(),
        &Patch::Apply(render(k, name, &placeholder)),
    )
    .await?;
    Ok(())
}

/// Let the Secret outlive its object (`deletionPolicy: Retain` keeps the AWS key, so
/// the Secret holding it must stay too): drop the owner reference the garbage
/// collector would follow.
pub async fn release(api: &Api<Secret>, name: &str) -> kube::Result<()> {
    let body = serde_json::json!({"metadata": {"ownerReferences": null}});
    match api
        .patch(
            name,
            &PatchParams {
                field_manager: Some(MANAGER.into()),
                ..Default::default()
            },
            &Patch::Merge(body),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IamUserAccessKeySpec;

    fn object() -> IamUserAccessKey {
        let spec: IamUserAccessKeySpec = serde_json::from_value(
            serde_json::json!({"userName": "ci", "credentialsProfile": "ci"}),
        )
        .unwrap();
        let mut k = IamUserAccessKey::new("ci", spec);
        k.metadata.namespace = Some("team".into());
        k.metadata.uid = Some("uid-1".into());
        k
    }

    fn key() -> KeyMaterial {
        KeyMaterial {
            id: "AKIAEXAMPLE".into(),
            secret: SecretValue::new("s3cr3t/value".into()),
        }
    }

    #[test]
    fn the_secret_never_prints() {
        let k = key();
        let printed = format!("{k:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }

    #[test]
    fn renders_env_keys_and_a_credentials_file() {
        let k = object();
        let s = render(&k, "ci", &key());
        let d = s.data.as_ref().unwrap();
        assert_eq!(d[ID_KEY].0, b"AKIAEXAMPLE");
        assert_eq!(d[SECRET_KEY].0, b"s3cr3t/value");
        assert_eq!(
            String::from_utf8(d[CREDENTIALS_KEY].0.clone()).unwrap(),
            "[ci]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = s3cr3t/value\n"
        );
        let o = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.controller),
            ("IamUserAccessKey", Some(true))
        );
        match observe(&k, "ci", Some(s.clone())) {
            Observed::Ours {
                key: Some(got),
                up_to_date: true,
                ..
            } => assert_eq!(got.id, "AKIAEXAMPLE"),
            _ => panic!("a rendered Secret is ours and up to date"),
        }
    }

    #[test]
    fn notices_edits_and_foreign_secrets() {
        let k = object();
        let mut s = render(&k, "ci", &key());
        s.data
            .as_mut()
            .unwrap()
            .insert(SECRET_KEY.into(), ByteString(b"edited".to_vec()));
        assert!(matches!(
            observe(&k, "ci", Some(s.clone())),
            Observed::Ours {
                key: None,
                up_to_date: false,
                shown_id: Some(_)
            }
        ));
        s.metadata.owner_references = None;
        assert!(matches!(observe(&k, "ci", Some(s)), Observed::NotOurs));
        let mut changed = object();
        changed.spec.credentials_profile = "other".into();
        let s = render(&k, "ci", &key());
        assert!(matches!(
            observe(&changed, "ci", Some(s)),
            Observed::Ours {
                key: Some(_),
                up_to_date: false,
                ..
            }
        ));
    }
}
