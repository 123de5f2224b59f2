use clap::Parser;

use aishacrm::cli::{self, Cli};

fn main() {
    let cli = Cli::parse();
    aishacrm::logging::init();
    let result = cli::run(cli);
    aishacrm::logging::flush();
    if let Err(error) = result {
        eprintln!("aishacrm: {error}");
        std::process::exit(1);
    }
}
