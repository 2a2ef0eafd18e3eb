use clap::Parser;
use iamwright::config::{Cli, Command};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { helm, reference } => {
            if reference {
                print!("{}", iamwright::reference::markdown());
            } else if helm {
                print!("{}", iamwright::crds::to_helm_template());
            } else {
                print!("{}", iamwright::crds::to_yaml());
            }
            Ok(())
        }
        Command::Policy(args) => {
            match iamwright::trust::operator_policy::read_scopes(&args.scopes) {
                Ok(scopes) => {
                    let doc = iamwright::trust::operator_policy::in_partition(
                        &iamwright::trust::operator_policy::policy(
                            &scopes,
                            &iamwright::config::TrustArgs::default(),
                        ),
                        &args.partition,
                    );
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&doc).expect("policy serializes")
                    );
                    Ok(())
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Validate(args) => {
            let guardrails = iamwright::validate::Guardrails {
                deny_actions: args.deny_actions,
                required_permissions_boundary: args.required_permissions_boundary,
                operator_principal: args.operator_principal,
                trust: args.trust,
            };
            let paths: Vec<_> = args.paths.into_iter().chain(args.files).collect();
            match iamwright::validate::validate_paths(&paths, &guardrails) {
                Ok(found) => {
                    // Notes (what only the operator can check) go to stderr and pass.
                    let (problems, notes): (Vec<_>, Vec<_>) =
                        found.into_iter().partition(|p| p.is_error());
                    for n in &notes {
                        eprintln!("note: {n}");
                    }
                    if problems.is_empty() {
                        Ok(())
                    } else {
                        for p in &problems {
                            println!("{p}");
                        }
                        eprintln!("{} problem(s)", problems.len());
                        std::process::exit(1);
                    }
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Run(args) => {
            iamwright::telemetry::init_logging(args.log_format, &args.log_level);
            iamwright::operator::run(*args).await
        }
    };
    if let Err(e) = result {
        eprintln!("iamwright: {e}");
        std::process::exit(1);
    }
}
