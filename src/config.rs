//! The command line: `iamwright run | crds | validate`. Every `run` flag can also be
//! set through an environment variable `IAMWRIGHT_<FLAG>`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::telemetry::LogFormat;

#[derive(Parser, Debug)]
#[command(
    name = "iamwright",
    version,
    about = "Manage AWS IAM from Kubernetes custom resources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controllers. A flag given twice takes its last value, so wrappers (and
    /// the e2e suite) can override defaults they pass.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Check manifests offline (CRD schema, policy grammar, guardrails); exit 1 on any problem.
    Validate(ValidateArgs),
    /// Print the least-privilege IAM policy for the operator's own AWS role, confined
    /// to the paths and permissions boundaries of the given IamScopes.
    Policy(PolicyArgs),
    /// Print the CustomResourceDefinitions as YAML.
    Crds {
        /// Print them as the Helm chart's template (behind `crds.install`, kept on uninstall).
        #[arg(long)]
        helm: bool,
        /// Print the API reference rendered from them (docs/api.md) instead.
        #[arg(long, conflicts_with = "helm")]
        reference: bool,
    },
}

#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true).args(["paths", "files"])))]
pub struct ValidateArgs {
    /// Files or directories (searched for *.yaml, *.yml, *.json); multi-document YAML.
    /// `-` reads the standard input (`kustomize build . | iamwright validate -f -`).
    #[arg(short = 'f', long = "filename", num_args = 1..)]
    pub paths: Vec<std::path::PathBuf>,
    /// More files or directories, as with `-f`.
    #[arg(value_name = "PATH")]
    pub files: Vec<std::path::PathBuf>,
    /// Permissions boundary the operator requires (as `run --required-permissions-boundary`).
    #[arg(long, env = "IAMWRIGHT_REQUIRED_PERMISSIONS_BOUNDARY")]
    pub required_permissions_boundary: Option<String>,
    /// Action glob no document may allow (as `run --deny-action`; repeatable).
    #[arg(
        long = "deny-action",
        env = "IAMWRIGHT_DENY_ACTION",
        value_delimiter = ','
    )]
    pub deny_actions: Vec<String>,
    /// The operator's own IAM principal (its role ARN), shown in the trust statement an
    /// IamRole with `spec.credentials` gets; a placeholder when not given.
    #[arg(long, value_name = "ARN")]
    pub operator_principal: Option<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `iamwright policy`: the operator's own IAM policy.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// IamScope manifests (YAML, multi-document); with none, the unconfined policy.
    #[arg(long = "scope", num_args = 1..)]
    pub scopes: Vec<std::path::PathBuf>,
    /// The cluster name (as `run --cluster-name`); only used in the statement ids.
    #[arg(long, env = "IAMWRIGHT_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// The AWS partition of the operator's account (`aws`, `aws-cn`, `aws-us-gov`):
    /// the ARNs of the policy are written in it.
    #[arg(long, default_value = "aws")]
    pub partition: String,
}

/// The trust-model grants of the whole cluster (docs/trust-model.md): without them a
/// namespace touches only what its own objects created.
#[derive(Args, Debug, Clone, Default)]
pub struct TrustArgs {
    /// Allow `adopt: true` in every namespace (else only where an IamScope grants it).
    #[arg(long, env = "IAMWRIGHT_ALLOW_ADOPTION")]
    pub allow_adoption: bool,
    /// Existing IAM users (name glob, repeatable) any IamUserAccessKey may issue keys for.
    #[arg(
        long = "allow-existing-user",
        env = "IAMWRIGHT_ALLOW_EXISTING_USER",
        value_delimiter = ','
    )]
    pub allow_existing_users: Vec<String>,
    /// Existing IAM roles (name glob, repeatable) any InstanceProfileBinding may name in roleName.
    #[arg(
        long = "allow-existing-role",
        env = "IAMWRIGHT_ALLOW_EXISTING_ROLE",
        value_delimiter = ','
    )]
    pub allow_existing_roles: Vec<String>,
    /// Existing IAM groups (name glob, repeatable) any IamUserAccessKey may join (spec.groups).
    #[arg(
        long = "allow-existing-group",
        env = "IAMWRIGHT_ALLOW_EXISTING_GROUP",
        value_delimiter = ','
    )]
    pub allow_existing_groups: Vec<String>,
    /// Allow trust policies that let anyone (`Principal: "*"`) assume a role without a Condition.
    #[arg(long, env = "IAMWRIGHT_ALLOW_PUBLIC_TRUST")]
    pub allow_public_trust: bool,
    /// Namespaces (glob, `{namespace}` allowed; repeatable) whose service accounts any
    /// IamRole may name in spec.serviceAccounts, besides its own namespace.
    #[arg(
        long = "allow-service-account-namespace",
        env = "IAMWRIGHT_ALLOW_SERVICE_ACCOUNT_NAMESPACE",
        value_delimiter = ','
    )]
    pub allow_service_account_namespaces: Vec<String>,
    /// How trust policies for `IamRole.spec.serviceAccounts` are generated. Held here
    /// because `run` and `validate` take them alike, as the trust grants.
    #[command(flatten)]
    pub eks: EksArgs,
}

/// The EKS identity mechanisms the cluster uses (docs/eks.md): they decide the trust
/// statements generated for `IamRole.spec.serviceAccounts`.
#[derive(Args, Debug, Clone, Default, PartialEq)]
pub struct EksArgs {
    /// The cluster's OIDC issuer URL (`aws eks describe-cluster --query
    /// cluster.identity.oidc.issuer`): service accounts get IRSA trust statements
    /// (sts:AssumeRoleWithWebIdentity from its IAM OIDC provider). Held without `https://`.
    #[arg(long, env = "IAMWRIGHT_OIDC_ISSUER", value_parser = parse_oidc_issuer)]
    pub oidc_issuer: Option<String>,
    /// Service accounts get EKS Pod Identity trust statements (pods.eks.amazonaws.com).
    #[arg(long, env = "IAMWRIGHT_POD_IDENTITY")]
    pub pod_identity: bool,
}

/// An OIDC issuer URL as EKS shows it, `https://oidc.eks.REGION.amazonaws.com/id/ID`,
/// reduced to what IAM names the provider by: host and path, no scheme, no trailing `/`.
pub fn parse_oidc_issuer(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("https://").unwrap_or(s);
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    // No port, no query: IAM provider names are a host and a path.
    let ok = !host.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~/".contains(c));
    if !ok {
        return Err(format!(
            "must be an https URL such as https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE, got {s:?}"
        ));
    }
    Ok(rest.to_string())
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Name of this cluster, written into the ownership tag iamwright.dev/cluster.
    /// Required: two clusters sharing an AWS account must never share an owner identity.
    #[arg(long, env = "IAMWRIGHT_CLUSTER_NAME", value_parser = parse_cluster_name)]
    pub cluster_name: String,
    /// AWS region (default: the SDK's default chain, e.g. AWS_REGION).
    #[arg(long, env = "IAMWRIGHT_REGION")]
    pub region: Option<String>,
    /// How often an in-sync object is compared with AWS again (reads only).
    #[arg(long, env = "IAMWRIGHT_RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub resync_interval: Duration,
    /// How often instance selectors are re-evaluated.
    #[arg(long, env = "IAMWRIGHT_INSTANCE_RESYNC_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub instance_resync_interval: Duration,
    /// Objects of one kind reconciled at once, whatever the number of watched
    /// namespaces. IAM answers in 100–300 ms and a reconcile makes its calls one after
    /// the other, so fewer cannot keep up with an account's rate (the pacer holds them
    /// to it): 4 left a converge 8 % behind a perfectly paced client at 20 calls/s.
    #[arg(long, env = "IAMWRIGHT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,
    /// A ceiling on the operator's AWS calls per second, all controllers together
    /// (0: none), so a platform can keep IAM capacity for its other tools.
    #[arg(
        long,
        env = "IAMWRIGHT_AWS_MAX_REQUESTS_PER_SECOND",
        default_value_t = 0
    )]
    pub aws_max_requests_per_second: u32,
    /// Namespace to watch (repeatable; default all namespaces).
    #[arg(
        long = "watch-namespace",
        env = "IAMWRIGHT_WATCH_NAMESPACE",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,
    /// A label selector (Kubernetes syntax, e.g. `shard=a` or `team in (x,y)`): only
    /// objects it selects are reconciled, so replicas can share the objects as shards,
    /// each with its own leader-election Lease (docs/sharding.md).
    #[arg(long, env = "IAMWRIGHT_OBJECT_SELECTOR")]
    pub object_selector: Option<String>,
    /// Address of the /metrics endpoint.
    #[arg(long, env = "IAMWRIGHT_METRICS_BIND_ADDRESS", default_value = ":8080", value_parser = parse_addr)]
    pub metrics_bind_address: SocketAddr,
    /// Address of the /healthz and /readyz endpoints.
    #[arg(long, env = "IAMWRIGHT_HEALTH_PROBE_BIND_ADDRESS", default_value = ":8081", value_parser = parse_addr)]
    pub health_probe_bind_address: SocketAddr,
    /// Elect a leader through a coordination.k8s.io Lease; only the leader reconciles.
    #[arg(long, env = "IAMWRIGHT_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (default: $POD_NAMESPACE, else `default`).
    #[arg(long, env = "IAMWRIGHT_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader-election Lease: operators sharded by namespace or selector
    /// each elect their own leader under their own name. With `--object-selector` and
    /// this left at its default, the name gets a suffix derived from the selector.
    #[arg(
        long,
        env = "IAMWRIGHT_LEADER_ELECTION_LEASE_NAME",
        default_value = DEFAULT_LEASE_NAME
    )]
    pub leader_election_lease_name: String,
    /// Permissions boundary set on every role and user the operator creates.
    #[arg(long, env = "IAMWRIGHT_REQUIRED_PERMISSIONS_BOUNDARY")]
    pub required_permissions_boundary: Option<String>,
    /// Action glob no managed document may allow (repeatable), e.g. `iam:*`.
    #[arg(
        long = "deny-action",
        env = "IAMWRIGHT_DENY_ACTION",
        value_delimiter = ','
    )]
    pub deny_actions: Vec<String>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Log format.
    #[arg(long, env = "IAMWRIGHT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log level or filter (RUST_LOG overrides it).
    #[arg(long, env = "IAMWRIGHT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// A cluster name: non-empty and usable as an IAM tag value.
fn parse_cluster_name(s: &str) -> Result<String, String> {
    let ok = s
        .chars()
        .all(|c| c.is_alphanumeric() || " _.:/=+-@".contains(c));
    if s.trim().is_empty() || s.len() > 256 || !ok {
        return Err(format!(
            "must be 1 to 256 letters, digits or _.:/=+-@ (it becomes the iamwright.dev/cluster tag), got {s:?}"
        ));
    }
    Ok(s.to_string())
}

/// Durations as Kubernetes and Go write them: `90s`, `10m`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// `:8080` (all interfaces, as controller-runtime writes it) or `127.0.0.1:8080`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|e| format!("invalid address {s:?}: {e}"))
}

/// The Lease's name: as given, except that a shard (`--object-selector`) left at the
/// default name gets its own (`iamwright-leader-<8 hex of the selector's SHA-256>`), so
/// two shards never wait for each other's leader.
pub fn lease_name(args: &RunArgs) -> String {
    let name = &args.leader_election_lease_name;
    match &args.object_selector {
        Some(selector) if name == DEFAULT_LEASE_NAME => {
            use sha2::{Digest, Sha256};
            let hash = Sha256::digest(selector.as_bytes());
            let hex: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
            format!("{name}-{hex}")
        }
        _ => name.clone(),
    }
}

/// The default Lease name (`--leader-election-lease-name`).
pub const DEFAULT_LEASE_NAME: &str = "iamwright-leader";

/// Operator settings the controllers need (from the command line). Here, below the
/// trust model and the controllers, because both read it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub cluster_name: String,
    pub resync: Duration,
    pub instance_resync: Duration,
    pub concurrency: u16,
    pub namespaces: Vec<String>,
    /// `--object-selector`: the shard of the objects this operator reconciles.
    pub object_selector: Option<String>,
    pub required_permissions_boundary: Option<String>,
    pub deny_actions: Vec<String>,
    /// The cluster-wide trust grants (`--allow-*`).
    pub trust: TrustArgs,
}

impl Settings {
    /// The settings of checks made without a cluster (`iamwright validate`, tests):
    /// the guardrails given, the rest at its defaults.
    pub fn guardrails(
        deny_actions: Vec<String>,
        boundary: Option<String>,
        trust: TrustArgs,
    ) -> Self {
        Self {
            cluster_name: String::new(),
            resync: Duration::from_secs(600),
            instance_resync: Duration::from_secs(60),
            concurrency: 1,
            namespaces: vec![],
            object_selector: None,
            required_permissions_boundary: boundary,
            deny_actions,
            trust,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_defaults() {
        let cli = Cli::try_parse_from([
            "iamwright",
            "run",
            "--cluster-name",
            "c1",
            "--resync-interval",
            "90s",
            "--deny-action",
            "iam:*",
            "--deny-action",
            "s3:Delete*",
            "--watch-namespace",
            "a,b",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("run")
        };
        assert_eq!(r.resync_interval, Duration::from_secs(90));
        assert_eq!(r.instance_resync_interval, Duration::from_secs(60));
        assert_eq!(r.deny_actions, vec!["iam:*", "s3:Delete*"]);
        assert_eq!(r.watch_namespaces, vec!["a", "b"]);
        assert_eq!(r.metrics_bind_address, "0.0.0.0:8080".parse().unwrap());
    }

    #[test]
    fn each_shard_elects_its_own_leader() {
        let run = |extra: &[&str]| {
            let mut argv = vec!["iamwright", "run", "--cluster-name", "c1"];
            argv.extend(extra);
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Run(r) => lease_name(&r),
                _ => panic!("run"),
            }
        };
        assert_eq!(run(&[]), "iamwright-leader");
        let (a, b) = (
            run(&["--object-selector", "shard=a"]),
            run(&["--object-selector", "shard=b"]),
        );
        assert!(a.starts_with("iamwright-leader-") && a.len() == "iamwright-leader-".len() + 8);
        assert_ne!(a, b);
        // A name given explicitly is used as it is.
        let named = [
            "--object-selector",
            "shard=a",
            "--leader-election-lease-name",
            "x",
        ];
        assert_eq!(run(&named), "x");
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value() {
        let cli = Cli::try_parse_from([
            "iamwright",
            "run",
            "--cluster-name",
            "c1",
            "--resync-interval",
            "5s",
            "--resync-interval",
            "10m",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("run")
        };
        assert_eq!(r.resync_interval, Duration::from_secs(600));
    }

    #[test]
    fn the_cluster_name_is_required() {
        let err = Cli::try_parse_from(["iamwright", "run"]).unwrap_err();
        assert!(err.to_string().contains("--cluster-name"), "{err}");
        assert!(Cli::try_parse_from(["iamwright", "run", "--cluster-name", ""]).is_err());
        let cli = Cli::try_parse_from([
            "iamwright",
            "run",
            "--cluster-name",
            "prod",
            "--allow-existing-user",
            "ci-*",
            "--allow-existing-user",
            "deploy",
            "--allow-adoption",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("run")
        };
        assert_eq!(r.trust.allow_existing_users, vec!["ci-*", "deploy"]);
        assert!(r.trust.allow_adoption && !r.trust.allow_public_trust);
        assert_eq!(r.trust.eks, EksArgs::default());
    }

    #[test]
    fn eks_flags_parse_and_the_issuer_loses_its_scheme() {
        let cli = Cli::try_parse_from([
            "iamwright",
            "run",
            "--cluster-name",
            "c1",
            "--oidc-issuer",
            "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC123/",
            "--pod-identity",
            "--allow-service-account-namespace",
            "shared",
            "--allow-service-account-namespace",
            "{namespace}-*",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("run")
        };
        assert_eq!(
            r.trust.eks.oidc_issuer.as_deref(),
            Some("oidc.eks.eu-west-1.amazonaws.com/id/ABC123")
        );
        assert!(r.trust.eks.pod_identity);
        assert_eq!(
            r.trust.allow_service_account_namespaces,
            vec!["shared", "{namespace}-*"]
        );
        assert_eq!(
            parse_oidc_issuer("oidc.example.com").as_deref(),
            Ok("oidc.example.com")
        );
        for bad in [
            "http://oidc.example.com",
            "https://",
            "https://a b",
            "https://h:443/x",
        ] {
            assert!(parse_oidc_issuer(bad).is_err(), "{bad}");
        }
    }
}
