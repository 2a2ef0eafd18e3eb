use clap::Parser;
use iamwright::config::{Cli, Command};

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { helm } => {
            if helm {
                print!("{}", iamwright::crds::to_helm_template());
            } else {
                print!("{}", iamwright::crds::to_yaml());
            }
            Ok(())
        }
        Command::Policy(args) => {
            match iamwright::trust::operator_policy::read_scopes(&args.scopes) {
                Ok(scopes) => {
                    let doc = iamwright::trust::operator_policy::policy(
                        &scopes,
                        &iamwright::config::TrustArgs::default(),
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
                trust: args.trust,
            };
            match iamwright::validate::validate_paths(&args.paths, &guardrails) {
                Ok(problems) if problems.is_empty() => Ok(()),
                Ok(problems) => {
                    for p in &problems {
                        println!("{p}");
                    }
                    eprintln!("{} problem(s)", problems.len());
                    std::process::exit(1);
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
