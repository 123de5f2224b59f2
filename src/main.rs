use clap::Parser;

use aishacrm::cli::{self, Cli};

fn main() {
    // Test builds only: `FAILPOINTS=<name>=<action>` arms the fail points the tests use.
    #[cfg(feature = "failpoints")]
    let _fail_points = fail::FailScenario::setup();
    let cli = Cli::parse();
    aishacrm::logging::init();
    let result = cli::run(cli);
    aishacrm::logging::flush();
    if let Err(error) = result {
        eprintln!("aishacrm: {error}");
        std::process::exit(1);
    }
}
