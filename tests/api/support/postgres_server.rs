//! A PostgreSQL server of a test's own: `initdb` into a temporary directory, `pg_ctl` on a free
//! port (as `postgres` when the tests run as root), stopped and removed when dropped. Optionally
//! TLS-only with a password, with a CA and server certificate the test makes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use uuid::Uuid;

use super::redis_server::free_port;

/// The newest PostgreSQL `bin` directory (`PG_BIN` overrides).
fn postgres_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("PG_BIN") {
        return PathBuf::from(bin);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries in /usr/lib/postgresql")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL bin directory").1
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A CA certificate (PEM) and its key, which sign server certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("aishacrm test CA {name}"));
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("the CA certificate");
        TestCa { cert, key }
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.cert.pem()).expect("writing the CA certificate");
    }

    /// A certificate for `names` (host names or IP addresses) and its key, both PEM.
    pub fn sign(&self, names: &[&str]) -> (String, String) {
        let names = names
            .iter()
            .map(|name| name.to_string())
            .collect::<Vec<_>>();
        let params = CertificateParams::new(names).expect("server parameters");
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("the server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// How a [`PostgresServer`] takes connections.
pub enum Access {
    /// Plain TCP with trust auth, as the shared server does.
    Trust,
    /// TCP with TLS only (`hostssl` lines alone), the certificate and key given, and the
    /// superuser's password required (`scram-sha-256`).
    TlsOnly {
        cert: String,
        key: String,
        password: String,
    },
}

/// A PostgreSQL server in a temporary directory on a free port; stopped (immediate) and its
/// directory removed when dropped.
pub struct PostgresServer {
    bin: PathBuf,
    pub dir: PathBuf,
    pub port: u16,
    root: bool,
}

impl PostgresServer {
    /// `program` of the PostgreSQL bin directory, run as `postgres` when we are root (the
    /// server refuses to run as root).
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, mut command: Command, what: &str) -> Result<(), String> {
        let output = command
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("{what}: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// initdb into a fresh temporary directory, trust auth (blocking).
    pub fn init() -> PostgresServer {
        Self::init_with(Access::Trust)
    }

    /// initdb into a fresh temporary directory, taking connections as `access` says (blocking).
    pub fn init_with(access: Access) -> PostgresServer {
        let dir = std::env::temp_dir().join(format!("aishacrm-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).expect("creating the PostgreSQL directory");
        let server = PostgresServer {
            bin: postgres_bin(),
            dir,
            port: free_port(),
            root: running_as_root(),
        };
        server.give_to_postgres(&server.dir);
        let mut initdb = server.command("initdb");
        initdb.arg("-D").arg(server.data()).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C",
            "-N",
        ]);
        server.run(initdb, "initdb").unwrap();
        if let Access::TlsOnly {
            cert,
            key,
            password,
        } = access
        {
            server.only_tls(&cert, &key, &password);
        }
        server
    }

    /// Makes `path` the server user's (when we are root, the server runs as `postgres`).
    fn give_to_postgres(&self, path: &Path) {
        if self.root {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(path);
            self.run(chown, "chown").unwrap();
        }
    }

    /// TLS on with `cert` and `key`; `hostssl` lines alone for TCP, with a password; the
    /// superuser's password set on the first start (through the socket, trusted).
    fn only_tls(&self, cert: &str, key: &str, password: &str) {
        use std::os::unix::fs::PermissionsExt;
        let data = self.data();
        std::fs::write(data.join("server.crt"), cert).expect("writing the certificate");
        std::fs::write(data.join("server.key"), key).expect("writing the key");
        // PostgreSQL refuses a key others may read.
        std::fs::set_permissions(data.join("server.key"), PermissionsExt::from_mode(0o600))
            .expect("key permissions");
        self.give_to_postgres(&data.join("server.crt"));
        self.give_to_postgres(&data.join("server.key"));
        let mut conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("conf");
        conf.push_str(
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             password_encryption = 'scram-sha-256'\n",
        );
        std::fs::write(data.join("postgresql.conf"), conf).expect("writing postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
        )
        .expect("writing pg_hba.conf");
        self.start().unwrap_or_else(|error| panic!("{error}"));
        let mut psql = self.command("psql");
        psql.arg("-h")
            .arg(&self.dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!(
                "ALTER USER postgres PASSWORD '{}'",
                password.replace('\'', "''")
            ));
        self.run(psql, "setting the password").unwrap();
    }

    /// A URL of this server's `database`, as `postgres` without a password.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Whether it is running.
    pub fn running(&self) -> bool {
        self.data().join("postmaster.pid").exists()
    }

    /// `pg_ctl start`, waiting until it accepts connections (blocking). Its socket lives in the
    /// server's directory, never in the shared server's.
    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.display()
        );
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "30", "-o", &options, "start"]);
        self.run(start, "pg_ctl start")
    }

    /// `pg_ctl stop -m <mode>`, waiting until it stopped (blocking).
    pub fn stop(&self, mode: &str) -> Result<(), String> {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-m", mode, "-w", "-t", "30", "stop"]);
        self.run(stop, "pg_ctl stop")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.stop("immediate");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
