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
