//! A TCP proxy of the test's own between an instance and PostgreSQL or Redis: it can be stopped
//! (every connection cut), frozen (every socket stays open and silent: a network partition, a
//! balancer that forgot the flow), thawed, and told to cut the connection that sends a chosen
//! command, before the command reaches the server.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which bytes a client sends make the proxy cut its connection.
type Matcher = Box<dyn Fn(&[u8]) -> bool + Send>;

/// Cuts the connection of the `remaining`-th matching write (counted over all connections), or
/// of every matching write while `every` holds.
struct Cut {
    matches: Matcher,
    remaining: usize,
    every: bool,
    /// Only a connection that sent these bytes before counts (another connection's matching
    /// writes, such as a background task's, do not).
    after: Option<Vec<u8>>,
}

/// A TCP proxy on a fixed loopback port. `stop` closes the listener and cuts every connection;
/// `freeze` keeps every socket open but forwards nothing more (a network partition).
pub struct Proxy {
    pub port: u16,
    upstream: String,
    accept: Option<JoinHandle<()>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    frozen: watch::Sender<bool>,
    /// Sockets of a frozen proxy, kept open and silent.
    graveyard: Arc<Mutex<Vec<TcpStream>>>,
    cuts: Arc<Mutex<Vec<Cut>>>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let mut proxy = Proxy {
            port: 0,
            upstream: upstream.to_owned(),
            accept: None,
            links: Arc::default(),
            frozen: watch::channel(false).0,
            graveyard: Arc::default(),
            cuts: Arc::default(),
            accepted: Arc::default(),
        };
        proxy.restart().await;
        proxy
    }

    /// (Re)opens the listener on the same port (a free one the first time).
    pub async fn restart(&mut self) {
        assert!(self.accept.is_none(), "the proxy is already running");
        self.frozen.send_replace(false);
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("binding the proxy port");
        self.port = listener.local_addr().expect("the proxy's address").port();
        let (upstream, links) = (self.upstream.clone(), self.links.clone());
        let (frozen, graveyard, cuts) = (
            self.frozen.clone(),
            self.graveyard.clone(),
            self.cuts.clone(),
        );
        let accepted = self.accepted.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let link = tokio::spawn(forward(
                    inbound,
                    upstream.clone(),
                    frozen.subscribe(),
                    graveyard.clone(),
                    cuts.clone(),
                ));
                let mut links = links.lock().unwrap();
                links.retain(|link| !link.is_finished());
                links.push(link);
            }
        }));
    }

    /// Closes the listener and every open connection (both ends).
    pub async fn stop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
        let links: Vec<JoinHandle<()>> = std::mem::take(&mut *self.links.lock().unwrap());
        for link in &links {
            link.abort();
        }
        for link in links {
            let _ = link.await;
        }
        self.graveyard.lock().unwrap().clear();
    }

    /// Stops forwarding without closing anything: connections stay open and silent, new ones are
    /// accepted and never answered.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// The network is back: new connections are forwarded again (those frozen stay silent, as a
    /// flow a balancer forgot does).
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Cuts the connection that sends the `nth` (from 1, counted from now over every
    /// connection) write containing the Redis command `command` and every one of `also`, before
    /// it reaches the server.
    pub fn cut_on_command(&self, command: &str, also: &[&str], nth: usize) {
        self.add_cut(command, also, nth, false);
    }

    /// Cuts every connection that sends `command` (with every one of `also`), until
    /// [`Self::clear_cuts`].
    pub fn cut_every(&self, command: &str, also: &[&str]) {
        self.add_cut(command, also, 1, true);
    }

    pub fn clear_cuts(&self) {
        self.cuts.lock().unwrap().clear();
    }

    /// Cuts the connection that sends the `nth` write containing `bytes` (any protocol: a
    /// PostgreSQL simple query is its text and a NUL), counting only connections that sent
    /// `earlier` before: the COMMIT of the transaction that sent an INSERT, not any COMMIT.
    pub fn cut_on_bytes_after(&self, earlier: &[u8], bytes: &[u8], nth: usize) {
        self.push_cut(vec![bytes.to_vec()], nth, false, Some(earlier.to_vec()));
    }

    fn add_cut(&self, command: &str, also: &[&str], nth: usize, every: bool) {
        // A Redis command is an array of bulk strings: `$<length>\r\n<word>\r\n` each.
        let needles: Vec<Vec<u8>> = std::iter::once(command)
            .chain(also.iter().copied())
            .map(|word| format!("${}\r\n{word}\r\n", word.len()).into_bytes())
            .collect();
        self.push_cut(needles, nth, every, None);
    }

    fn push_cut(&self, needles: Vec<Vec<u8>>, nth: usize, every: bool, after: Option<Vec<u8>>) {
        self.cuts.lock().unwrap().push(Cut {
            matches: Box::new(move |bytes| needles.iter().all(|needle| contains(bytes, needle))),
            remaining: nth,
            every,
            after,
        });
    }

    /// Whether every single cut asked for has happened.
    pub fn cuts_done(&self) -> bool {
        self.cuts.lock().unwrap().iter().all(|cut| cut.every)
    }

    /// Connections the proxy accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

fn contains(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|window| window == needle)
}

/// Whether `bytes`, written by a connection that sent `sent` before, trigger a cut (and count
/// them towards the cuts still waiting). Adds to `sent` the `after` markers `bytes` carry.
fn cut_now(cuts: &Mutex<Vec<Cut>>, bytes: &[u8], sent: &mut Vec<Vec<u8>>) -> bool {
    let mut cuts = cuts.lock().unwrap();
    let mut fired = false;
    cuts.retain_mut(|cut| {
        let qualified = match &cut.after {
            None => true,
            Some(marker) => sent.contains(marker),
        };
        if fired || !qualified || !(cut.matches)(bytes) {
            return true;
        }
        if cut.every {
            fired = true;
            return true;
        }
        cut.remaining -= 1;
        fired = cut.remaining == 0;
        !fired
    });
    for marker in cuts.iter().filter_map(|cut| cut.after.as_ref()) {
        if contains(bytes, marker) && !sent.contains(marker) {
            sent.push(marker.clone());
        }
    }
    fired
}

async fn forward(
    inbound: TcpStream,
    upstream: String,
    mut frozen: watch::Receiver<bool>,
    graveyard: Arc<Mutex<Vec<TcpStream>>>,
    cuts: Arc<Mutex<Vec<Cut>>>,
) {
    if *frozen.borrow() {
        graveyard.lock().unwrap().push(inbound);
        return;
    }
    let Ok(outbound) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let upward = async {
        let mut buffer = vec![0u8; 64 * 1024];
        let mut sent = Vec::new();
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 || cut_now(&cuts, &buffer[..read], &mut sent) {
                return Ok::<_, std::io::Error>(());
            }
            server_write.write_all(&buffer[..read]).await?;
        }
    };
    let downward = tokio::io::copy(&mut server_read, &mut client_write);
    let froze = tokio::select! {
        _ = upward => false,
        _ = downward => false,
        _ = frozen.wait_for(|frozen| *frozen) => true,
    };
    // Leaving drops (closes) both connections, unless the network froze: then they stay open.
    if froze {
        let mut graveyard = graveyard.lock().unwrap();
        graveyard.extend(client_read.reunite(client_write).ok());
        graveyard.extend(server_read.reunite(server_write).ok());
    }
}

/// `url` with its host and port replaced by `127.0.0.1:port`, and the `host:port` it named. A
/// PostgreSQL URL also gets `sslmode=disable`: the proxy cuts on the bytes of the protocol,
/// which TLS would hide.
pub fn through_proxy(url: &str, port: u16) -> (String, String) {
    let authority_start = url.find("://").expect("a URL") + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |end| authority_start + end);
    let authority = &url[authority_start..authority_end];
    let (userinfo, host_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let upstream = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let mut proxied = format!(
        "{}{userinfo}127.0.0.1:{port}{}",
        &url[..authority_start],
        &url[authority_end..]
    );
    if url.starts_with("postgres") {
        proxied.push(if proxied.contains('?') { '&' } else { '?' });
        proxied.push_str("sslmode=disable");
    }
    (proxied, upstream)
}
