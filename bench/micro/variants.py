"""Applies one micro-optimisation "off" variant to src/ (bench/micro/build.sh builds each one).

Each variant removes one measured shortcut, so that bench/callgrind.sh (BINARY=...) and
bench/micro/wall.sh can compare the binary with and without it:
  nomemo     every request verifies its JWT (no memo of verified tokens)
  sharedl2   every L2 command goes on the one shared connection (no per-worker connections)
  envlogger  env_logger writes log lines itself (no buffered background writer)
  ttlmap     the TTL override is looked up by formatted name in a map on every request
"""
import sys


def edit(path, pairs):
    text = open(path).read()
    for old, new in pairs:
        if old not in text:
            raise SystemExit(f"{path}: the variant no longer applies: {old[:60]!r}")
        text = text.replace(old, new)
    open(path, "w").write(text)


v=sys.argv[1]
if v=='nomemo':
    edit('src/auth.rs',[("if let Some(principal) = self.remembered(token) {","if let Some(principal) = None::<Principal> {"),
    ("""        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_MAX {""","""        return Ok(principal);
        #[allow(unreachable_code)]
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_MAX {""")])
elif v=='sharedl2':
    edit('src/cache/l2.rs',[("""        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(local) = self.local_connection(epoch) {""","""        #[allow(clippy::needless_return)]
        return self.any_connection();
        #[allow(unreachable_code)]
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(local) = self.local_connection(epoch) {""")])
elif v=='envlogger':
    edit('src/logging.rs',[("""pub fn init() {
""","""pub fn init() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).try_init();
    return;
    #[allow(unreachable_code)]
""")])
elif v=='ttlmap':
    edit('src/cache/ttl.rs',[("""    overrides: [[Option<u64>; Operation::COUNT]; Module::COUNT],
}""","""    overrides: [[Option<u64>; Operation::COUNT]; Module::COUNT],
    names: HashMap<String, u64>,
}"""),("""        Ttls { overrides: table }""","""        let names = overrides.iter().map(|(name, secs)| (name.to_ascii_lowercase(), *secs)).collect();
        Ttls { overrides: table, names }"""),
("""        self.overrides[module.index()][operation.index()].map_or(default, Duration::from_secs)""","""        let _ = &self.overrides;
        let wanted = format!("{}_{}", module.name(), operation.name()).to_ascii_lowercase();
        self.names.get(&wanted).map_or(default, |secs| Duration::from_secs(*secs))""")])
else:
    raise SystemExit("unknown variant")
