//! The trust model (docs/trust-model.md): a namespace touches only what its own objects
//! created, unless the platform grants more — cluster-wide with the `--allow-*` flags,
//! or per namespace with an [`IamScope`]. This module turns the flags and the scope
//! that governs a namespace into one [`Governance`] and holds the checks every kind
//! makes with it (pure, so they are table-tested); [`resolve`] reads the scope.

pub mod eks;
pub mod managed;
pub mod operator_policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use kube::core::{Selector, SelectorExt};
use kube::{Client, ResourceExt};

use crate::api::IamScope;
use crate::config::Settings;
use crate::error::Error;
use crate::policy::glob_match;
use crate::reason::Reason;

/// The label the apiserver sets on every namespace to its own name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The managed policies a scope allows when it names none.
pub const DEFAULT_MANAGED_POLICY_ARNS: &[&str] = &["arn:*:iam::aws:policy/*"];

/// What the objects of one namespace may do: the operator's flags merged with the
/// IamScope that governs the namespace (if any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Governance {
    pub namespace: String,
    /// The governing IamScope's name.
    pub scope: Option<String>,
    /// IAM path (with `{namespace}` replaced) everything must live under.
    pub path: Option<String>,
    /// Prefix (with `{namespace}` replaced) every AWS name must start with.
    pub name_prefix: Option<String>,
    /// The boundary every role and user created gets: the scope's, else
    /// `--required-permissions-boundary`.
    pub boundary: Option<String>,
    /// `--deny-action` plus the scope's denyActions.
    pub deny_actions: Vec<String>,
    /// ARN globs of attachable managed policies; None: any (no scope).
    pub managed_policy_arns: Option<Vec<String>>,
    pub allow_adopt: bool,
    pub existing_users: Vec<String>,
    pub existing_roles: Vec<String>,
    pub existing_groups: Vec<String>,
    /// Namespace globs (with `{namespace}` replaced) whose service accounts a role may trust.
    pub service_account_namespaces: Vec<String>,
    /// EC2 tags (with `{namespace}` replaced) an instance must carry to be bound.
    pub instance_tags: BTreeMap<String, String>,
    pub allow_public_trust: bool,
    /// The account the namespace's objects live in (the scope's `spec.account`); None:
    /// the operator's own.
    pub account: Option<crate::api::ScopeAccount>,
}

fn subst(s: &str, namespace: &str) -> String {
    s.replace("{namespace}", namespace)
}

impl Governance {
    /// The governance of `namespace` under `settings` and, if one governs it, `scope`.
    pub fn new(settings: &Settings, namespace: &str, scope: Option<&IamScope>) -> Self {
        let t = &settings.trust;
        let mut g = Governance {
            namespace: namespace.to_string(),
            scope: None,
            path: None,
            name_prefix: None,
            boundary: settings.required_permissions_boundary.clone(),
            deny_actions: settings.deny_actions.clone(),
            managed_policy_arns: None,
            allow_adopt: t.allow_adoption,
            existing_users: t.allow_existing_users.clone(),
            existing_roles: t.allow_existing_roles.clone(),
            existing_groups: t.allow_existing_groups.clone(),
            service_account_namespaces: t
                .allow_service_account_namespaces
                .iter()
                .map(|g| subst(g, namespace))
                .collect(),
            instance_tags: BTreeMap::new(),
            allow_public_trust: t.allow_public_trust,
            account: None,
        };
        if let Some(s) = scope {
            let spec = &s.spec;
            g.scope = Some(s.name_any());
            g.path = spec.path.as_deref().map(|p| subst(p, namespace));
            g.name_prefix = spec.name_prefix.as_deref().map(|p| subst(p, namespace));
            if let Some(b) = &spec.permissions_boundary {
                g.boundary = Some(b.clone());
            }
            g.deny_actions.extend(spec.deny_actions.iter().cloned());
            g.managed_policy_arns = Some(if spec.managed_policy_arns.is_empty() {
                DEFAULT_MANAGED_POLICY_ARNS
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            } else {
                spec.managed_policy_arns.clone()
            });
            g.allow_adopt |= spec.allow_adopt;
            g.existing_users.extend(spec.existing_users.iter().cloned());
            g.existing_roles.extend(spec.existing_roles.iter().cloned());
            g.existing_groups
                .extend(spec.existing_groups.iter().cloned());
            g.service_account_namespaces.extend(
                spec.service_account_namespaces
                    .iter()
                    .map(|g| subst(g, namespace)),
            );
            g.account = spec.account.clone();
            g.instance_tags = spec
                .instance_tags
                .iter()
                .map(|(k, v)| (k.clone(), subst(v, namespace)))
                .collect();
        }
        g
    }

    /// The operator settings with this governance's guardrails (boundary, denied
    /// actions, public trust), for the checks that take settings.
    pub fn settings(&self, base: &Settings) -> Settings {
        let mut s = base.clone();
        s.required_permissions_boundary = self.boundary.clone();
        s.deny_actions = self.deny_actions.clone();
        s.trust.allow_public_trust = self.allow_public_trust;
        s
    }

    /// Who grants or refuses, for messages.
    fn by(&self) -> String {
        match &self.scope {
            Some(s) => format!("IamScope {s:?}"),
            None => "the operator's flags".into(),
        }
    }

    fn not_permitted(&self, field: &str, message: String) -> Error {
        Error::at(Reason::NotPermitted, field, message)
    }

    /// The IAM path an object gets: `spec.path` when it lies under the scope's path, the
    /// scope's path when `spec.path` is the default `/`, NotPermitted otherwise.
    pub fn path(&self, spec_path: &str) -> Result<String, Error> {
        match &self.path {
            None => Ok(spec_path.to_string()),
            Some(p) if spec_path == "/" => Ok(p.clone()),
            Some(p) if spec_path.starts_with(p.as_str()) => Ok(spec_path.to_string()),
            Some(p) => Err(self.not_permitted(
                "spec.path",
                format!(
                    "must be {p:?} or a path under it ({} confines namespace {} to it), got {spec_path:?}",
                    self.by(),
                    self.namespace
                ),
            )),
        }
    }

    /// The path without the check (for names of existing resources and cleanup).
    pub fn path_or(&self, spec_path: &str) -> String {
        self.path(spec_path)
            .unwrap_or_else(|_| spec_path.to_string())
    }

    /// The default AWS name of an object: `<namespace>-<name>`, or `<prefix><name>` when
    /// the scope's namePrefix is not a prefix of that; cut to `max` with a hash suffix.
    pub fn default_name(&self, namespace: &str, name: &str, max: usize) -> String {
        let plain = format!("{namespace}-{name}");
        match &self.name_prefix {
            Some(prefix) if !plain.starts_with(prefix.as_str()) => {
                crate::naming::cut_name(&format!("{prefix}{name}"), max)
            }
            _ => crate::naming::cut_name(&plain, max),
        }
    }

    /// An AWS name the object would create or own must start with the scope's prefix.
    pub fn check_name(&self, field: &str, name: &str) -> Result<(), Error> {
        match &self.name_prefix {
            Some(prefix) if !name.starts_with(prefix.as_str()) => Err(self.not_permitted(
                field,
                format!(
                    "AWS name {name:?} must start with {prefix:?} ({} in namespace {})",
                    self.by(),
                    self.namespace
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Adopting an existing untagged resource needs a grant.
    pub fn check_adopt(&self, what: &str) -> Result<(), Error> {
        if self.allow_adopt {
            return Ok(());
        }
        Err(self.not_permitted(
            "spec.adopt",
            format!(
                "adopting {what} is not granted in namespace {}: the platform team grants it with IamScope spec.allowAdopt or the operator flag --allow-adoption",
                self.namespace
            ),
        ))
    }

    pub fn user_granted(&self, user: &str) -> bool {
        self.existing_users.iter().any(|g| glob_match(g, user))
    }

    pub fn role_granted(&self, role: &str) -> bool {
        self.existing_roles.iter().any(|g| glob_match(g, role))
    }

    /// A role trusting the service accounts of namespace `sa_namespace` (at `field`):
    /// its own namespace always, another only with a grant.
    pub fn check_service_account_namespace(
        &self,
        field: &str,
        sa_namespace: &str,
    ) -> Result<(), Error> {
        if sa_namespace == self.namespace
            || self
                .service_account_namespaces
                .iter()
                .any(|g| glob_match(g, sa_namespace))
        {
            return Ok(());
        }
        Err(self.not_permitted(
            field,
            format!(
                "trusting the service accounts of namespace {sa_namespace:?} from namespace {} needs a grant (IamScope spec.serviceAccountNamespaces or the operator flag --allow-service-account-namespace)",
                self.namespace
            ),
        ))
    }

    /// Key issuance for an existing user this object does not own.
    pub fn check_existing_user(&self, user: &str, why: &str) -> Result<(), Error> {
        if self.user_granted(user) {
            return Ok(());
        }
        Err(self.not_permitted(
            "spec.userName",
            format!(
                "IAM user {user:?} {why}; issuing keys for it needs a grant (IamScope spec.existingUsers or the operator flag --allow-existing-user) in namespace {}",
                self.namespace
            ),
        ))
    }

    /// Joining the existing group `group` (named at `field`) gains its policies: only
    /// with a grant.
    pub fn check_existing_group(&self, field: &str, group: &str) -> Result<(), Error> {
        if self.existing_groups.iter().any(|g| glob_match(g, group)) {
            return Ok(());
        }
        Err(self.not_permitted(
            field,
            format!(
                "joining the existing IAM group {group:?} gains its policies and needs a grant (IamScope spec.existingGroups or the operator flag --allow-existing-group) in namespace {}",
                self.namespace
            ),
        ))
    }

    /// `managedPolicyArns` must match the scope's globs or be one of the namespace's own
    /// IamPolicies (`own`).
    pub fn check_managed_arns(
        &self,
        field: &str,
        arns: &[String],
        own: &[String],
    ) -> Result<(), Error> {
        let Some(globs) = &self.managed_policy_arns else {
            return Ok(());
        };
        for (i, arn) in arns.iter().enumerate() {
            if !own.contains(arn) && !globs.iter().any(|g| glob_match(g, arn)) {
                return Err(self.not_permitted(
                    &format!("{field}[{i}]"),
                    format!(
                        "policy {arn} may not be attached in namespace {}: {} allows {globs:?} and the namespace's own IamPolicies",
                        self.namespace,
                        self.by()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `scope` selects the namespace with these labels (its own name label
/// included). A selector that cannot be read selects nothing (its status says why).
pub fn selects(scope: &IamScope, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(scope.spec.namespace_selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// A namespace's labels, with the name label even where the apiserver does not set it.
pub fn namespace_labels(ns: &Namespace) -> BTreeMap<String, String> {
    let mut labels = ns.labels().clone();
    labels
        .entry(NAMESPACE_NAME_LABEL.to_string())
        .or_insert_with(|| ns.name_any());
    labels
}

/// The single scope among `scopes` governing a namespace; two or more: ScopeConflict.
pub fn governing<'a>(
    scopes: &'a [IamScope],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Result<Option<&'a IamScope>, Error> {
    let matching: Vec<&IamScope> = scopes.iter().filter(|s| selects(s, labels)).collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => {
            let names: Vec<String> = many.iter().map(|s| s.name_any()).collect();
            Err(Error::stalled(
                Reason::ScopeConflict,
                format!(
                    "namespace {namespace} is governed by {} IamScopes ({}); the platform team must make their namespaceSelectors disjoint",
                    names.len(),
                    names.join(", ")
                ),
            ))
        }
    }
}

/// Read the namespace's labels and the IamScopes (from `cache` when it holds them),
/// and merge the one that governs it.
pub async fn resolve(
    cache: &GovernanceCache,
    client: &Client,
    settings: &Settings,
    namespace: &str,
) -> Result<Governance, Error> {
    let (epoch, scopes, labels) = cache.lookup(namespace);
    let labels = match labels {
        Some(labels) => labels,
        None => {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            match namespaces.get_opt(namespace).await? {
                Some(ns) => namespace_labels(&ns),
                None => BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), namespace.to_string())]),
            }
        }
    };
    let scopes = match scopes {
        Some(scopes) => scopes,
        None => {
            let api: Api<IamScope> = Api::all(client.clone());
            Arc::new(api.list(&Default::default()).await?.items)
        }
    };
    cache.keep(epoch, namespace, &labels, &scopes);
    let scope = governing(&scopes, namespace, &labels)?;
    Ok(Governance::new(settings, namespace, scope))
}

/// What [`resolve`] reads — every IamScope, and each namespace's labels — kept between
/// reconciles: without it every reconcile cost a GET and a LIST on the API server.
/// The governance watches (the ones that re-evaluate a namespace's objects when a
/// scope or its labels change) [`invalidate`](Self::invalidate) it before they
/// trigger anything, so a reconcile they start reads afresh; an epoch keeps a read
/// that began before the change from being kept after it.
#[derive(Default)]
pub struct GovernanceCache {
    state: std::sync::Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    epoch: u64,
    scopes: Option<Arc<Vec<IamScope>>>,
    labels: std::collections::HashMap<String, BTreeMap<String, String>>,
}

type Cached = (
    u64,
    Option<Arc<Vec<IamScope>>>,
    Option<BTreeMap<String, String>>,
);

impl GovernanceCache {
    fn lookup(&self, namespace: &str) -> Cached {
        let st = self.state.lock().expect("governance cache lock");
        (
            st.epoch,
            st.scopes.clone(),
            st.labels.get(namespace).cloned(),
        )
    }

    fn keep(
        &self,
        epoch: u64,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        scopes: &Arc<Vec<IamScope>>,
    ) {
        let mut st = self.state.lock().expect("governance cache lock");
        if st.epoch == epoch {
            st.scopes = Some(scopes.clone());
            st.labels.insert(namespace.to_string(), labels.clone());
        }
    }

    /// A scope or a namespace's labels changed: the next resolve reads them again.
    pub fn invalidate(&self) {
        let mut st = self.state.lock().expect("governance cache lock");
        st.epoch += 1;
        st.scopes = None;
        st.labels.clear();
    }
}

tokio::task_local! {
    static CURRENT: Arc<Governance>;
}

/// Run `fut` (one reconcile of an object) with `gov` as its [`current`] governance.
pub async fn with<F: std::future::Future>(gov: Arc<Governance>, fut: F) -> F::Output {
    CURRENT.scope(gov, fut).await
}

/// The governance of the object being reconciled, set once by the reconciler (so
/// every step of a kind sees the same answer without threading it through each call).
/// Outside a reconcile (tests, tools): no scope and no grants.
pub fn current() -> Arc<Governance> {
    CURRENT
        .try_with(|g| g.clone())
        .unwrap_or_else(|_| Arc::new(Governance::default()))
}

/// Trust policies that let anyone assume the role: a statement allowing `Principal: "*"`
/// or `{"AWS": "*"}` without a Condition. Returns the statement's field path.
pub fn public_trust(doc: &serde_json::Value, root: &str) -> Option<String> {
    use crate::policy::model::{Effect, Principal, PrincipalType};
    let parsed = crate::policy::Document::parse(doc, root).ok()?;
    let many = doc.get("Statement").is_some_and(|s| s.is_array());
    for (i, st) in parsed.statements().iter().enumerate() {
        if st.effect != Effect::Allow || st.condition.is_some() {
            continue;
        }
        let anyone = match &st.principal {
            Some(Principal::Any) => true,
            Some(Principal::Map(entries)) => entries
                .iter()
                .any(|(t, v)| *t == PrincipalType::Aws && v.iter().any(|p| p == "*")),
            None => false,
        };
        if anyone {
            let path = if many {
                format!("{root}.Statement[{i}].Principal")
            } else {
                format!("{root}.Statement.Principal")
            };
            return Some(path);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> Settings {
        Settings {
            cluster_name: "c".into(),
            resync: std::time::Duration::from_secs(600),
            instance_resync: std::time::Duration::from_secs(60),
            concurrency: 1,
            namespaces: vec![],
            object_selector: None,
            required_permissions_boundary: Some("arn:aws:iam::1:policy/flag".into()),
            deny_actions: vec!["iam:*".into()],
            trust: Default::default(),
        }
    }

    fn scope(name: &str, spec: serde_json::Value) -> IamScope {
        serde_json::from_value(json!({
            "apiVersion": "iamwright.dev/v1alpha1", "kind": "IamScope",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap()
    }

    fn team_a() -> IamScope {
        scope(
            "team-a",
            json!({
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "a"}},
                "path": "/tenants/{namespace}/", "namePrefix": "{namespace}-",
                "permissionsBoundary": "arn:aws:iam::1:policy/tenant",
                "denyActions": ["s3:Delete*"], "allowAdopt": true,
                "existingUsers": ["ci-*"], "instanceTags": {"tenant": "{namespace}"}
            }),
        )
    }

    #[test]
    fn flags_alone_grant_nothing_and_a_scope_merges_in() {
        let none = Governance::new(&settings(), "a", None);
        assert!(!none.allow_adopt && none.existing_users.is_empty());
        assert_eq!(none.path("/x/").unwrap(), "/x/");
        assert!(none.check_adopt("role r").is_err());
        assert!(none.check_existing_user("u", "exists").is_err());
        assert!(
            none.check_managed_arns("f", &["arn:aws:iam::1:policy/x".into()], &[])
                .is_ok()
        );

        let g = Governance::new(&settings(), "a", Some(&team_a()));
        assert_eq!(g.scope.as_deref(), Some("team-a"));
        assert_eq!(g.path("/").unwrap(), "/tenants/a/");
        assert_eq!(g.path("/tenants/a/x/").unwrap(), "/tenants/a/x/");
        let e = g.path("/other/").unwrap_err().to_string();
        assert!(e.starts_with("spec.path: must be \"/tenants/a/\""), "{e}");
        assert_eq!(g.boundary.as_deref(), Some("arn:aws:iam::1:policy/tenant"));
        assert_eq!(g.deny_actions, vec!["iam:*", "s3:Delete*"]);
        assert!(g.check_adopt("x").is_ok());
        assert!(g.user_granted("ci-deploy") && !g.user_granted("admin"));
        assert_eq!(g.instance_tags["tenant"], "a");
        assert!(g.check_name("spec.name", "a-role").is_ok());
        assert!(g.check_name("spec.name", "b-role").is_err());
        assert!(
            g.check_managed_arns("f", &["arn:aws:iam::aws:policy/ReadOnlyAccess".into()], &[])
                .is_ok()
        );
        let own = "arn:aws:iam::1:policy/tenants/a/a-p".to_string();
        assert!(
            g.check_managed_arns("f", std::slice::from_ref(&own), std::slice::from_ref(&own))
                .is_ok()
        );
        let e = g
            .check_managed_arns(
                "spec.managedPolicyArns",
                &["arn:aws:iam::1:policy/other".into()],
                &[],
            )
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("spec.managedPolicyArns[0]: policy"), "{e}");
    }

    #[test]
    fn service_account_namespaces_need_a_grant_from_flags_or_scope() {
        let mut base = settings();
        let none = Governance::new(&base, "a", None);
        assert!(none.check_service_account_namespace("f", "a").is_ok());
        let e = none
            .check_service_account_namespace("spec.serviceAccounts[0].namespace", "b")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("spec.serviceAccounts[0].namespace: trusting the service accounts of namespace \"b\"")
                && e.contains("serviceAccountNamespaces")
                && e.contains("--allow-service-account-namespace"),
            "{e}"
        );
        base.trust.allow_service_account_namespaces = vec!["{namespace}-*".into()];
        let flag = Governance::new(&base, "a", None);
        assert!(flag.check_service_account_namespace("f", "a-jobs").is_ok());
        assert!(flag.check_service_account_namespace("f", "b-jobs").is_err());
        let s = scope(
            "s",
            json!({"namespaceSelector": {}, "serviceAccountNamespaces": ["shared"]}),
        );
        let scoped = Governance::new(&base, "a", Some(&s));
        assert!(
            scoped
                .check_service_account_namespace("f", "shared")
                .is_ok()
        );
        assert!(scoped.check_service_account_namespace("f", "a-x").is_ok());
        assert!(
            scoped
                .check_service_account_namespace("f", "other")
                .is_err()
        );
    }

    #[test]
    fn joining_an_existing_group_needs_a_grant_from_flags_or_scope() {
        let mut base = settings();
        let none = Governance::new(&base, "a", None);
        let e = none
            .check_existing_group("spec.groups[0]", "Admins")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("spec.groups[0]: joining the existing IAM group \"Admins\"")
                && e.contains("existingGroups")
                && e.contains("--allow-existing-group"),
            "{e}"
        );
        base.trust.allow_existing_groups = vec!["Dev*".into()];
        let flag = Governance::new(&base, "a", None);
        assert!(flag.check_existing_group("f", "Developers").is_ok());
        assert!(flag.check_existing_group("f", "Admins").is_err());
        let s = scope(
            "s",
            json!({"namespaceSelector": {}, "existingGroups": ["Admin*"]}),
        );
        let scoped = Governance::new(&base, "a", Some(&s));
        assert!(scoped.check_existing_group("f", "Admins").is_ok());
        assert!(scoped.check_existing_group("f", "Developers").is_ok());
        assert!(scoped.check_existing_group("f", "Ops").is_err());
    }

    #[test]
    fn default_names_follow_the_prefix() {
        let mut g = Governance::new(&settings(), "a", Some(&team_a()));
        assert_eq!(g.default_name("a", "r", 64), "a-r");
        g.name_prefix = Some("tenant-a.".into());
        assert_eq!(g.default_name("a", "r", 64), "tenant-a.r");
    }

    #[test]
    fn two_scopes_on_one_namespace_conflict() {
        let labels = BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), "a".to_string())]);
        let all = scope("all", json!({"namespaceSelector": {}}));
        let other = scope(
            "b",
            json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}}),
        );
        assert_eq!(
            governing(&[team_a(), other.clone()], "a", &labels)
                .unwrap()
                .map(|s| s.name_any()),
            Some("team-a".into())
        );
        assert!(
            governing(std::slice::from_ref(&other), "a", &labels)
                .unwrap()
                .is_none()
        );
        let e = governing(&[team_a(), all, other], "a", &labels).unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Stalled {
                    reason: Reason::ScopeConflict,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("team-a, all"), "{e}");
    }

    #[test]
    fn public_trust_is_found_without_a_condition_only() {
        let doc = |p: serde_json::Value, cond: bool| {
            let mut st = json!({"Effect": "Allow", "Principal": p, "Action": "sts:AssumeRole"});
            if cond {
                st["Condition"] = json!({"StringEquals": {"sts:ExternalId": "x"}});
            }
            json!({"Version": "2012-10-17", "Statement": [st]})
        };
        let root = "spec.assumeRolePolicy";
        assert_eq!(
            public_trust(&doc(json!("*"), false), root).as_deref(),
            Some("spec.assumeRolePolicy.Statement[0].Principal")
        );
        assert!(
            public_trust(
                &doc(json!({"AWS": ["arn:aws:iam::1:root", "*"]}), false),
                root
            )
            .is_some()
        );
        assert!(public_trust(&doc(json!("*"), true), root).is_none());
        assert!(public_trust(&doc(json!({"Service": "ec2.amazonaws.com"}), false), root).is_none());
        assert!(public_trust(&doc(json!({"AWS": "arn:aws:iam::1:root"}), false), root).is_none());
    }
}
