use clap::Parser;

use aishacrm::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if let Err(error) = cli::run(cli) {
        log::error!("{error}");
        eprintln!("aishacrm: {error}");
        std::process::exit(1);
    }
}
