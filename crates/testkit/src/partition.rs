//! A TCP forwarder on loopback that a test can cut, as a network partition between a server
//! and its datastore: while cut, no byte flows either way — open connections hang rather than
//! fail, new ones are accepted and carry nothing — until it is healed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Partitionable {
    /// Where clients connect instead of the target.
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

fn pump(mut from: TcpStream, mut to: TcpStream, cut: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    while !stop.load(Ordering::Relaxed) {
        if cut.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Partitionable {
    /// Forwards connections on a free loopback port to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Partitionable> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (cut, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (c, s) = (cut.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(upstream) = TcpStream::connect(target) else { continue };
                        let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else { continue };
                        let (ca, sa, cb, sb) = (c.clone(), s.clone(), c.clone(), s.clone());
                        std::thread::spawn(move || pump(client, upstream, ca, sa));
                        std::thread::spawn(move || pump(u2, c2, cb, sb));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Partitionable { addr, cut, stop })
    }

    /// Stops every byte, both ways.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Relaxed);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::Relaxed);
    }
}

impl Drop for Partitionable {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
