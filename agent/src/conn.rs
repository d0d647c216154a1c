//! One connection (a vsock socket in the guest, a Unix socket on the host or in tests) and
//! reading its lines with a cap.

use rustix::net::sockopt::{self, Timeout};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// A connected stream socket.
#[derive(Debug)]
pub struct Conn(OwnedFd);

impl Conn {
    pub fn new(fd: OwnedFd) -> Conn {
        Conn(fd)
    }

    /// A second handle on the same socket (for a reader thread).
    pub fn try_clone(&self) -> io::Result<Conn> {
        Ok(Conn(rustix::io::fcntl_dupfd_cloexec(&self.0, 3)?))
    }

    /// Reads time out after `d` (`None`: never).
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Ok(sockopt::set_socket_timeout(&self.0, Timeout::Recv, d)?)
    }

    /// Writes time out after `d` (`None`: never).
    pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        Ok(sockopt::set_socket_timeout(&self.0, Timeout::Send, d)?)
    }

    /// No more writes from this side (the peer reads EOF).
    pub fn shutdown_write(&self) {
        let _ = rustix::net::shutdown(&self.0, rustix::net::Shutdown::Write);
    }

    /// Neither side reads or writes any more (a thread blocked reading it wakes up).
    pub fn shutdown(&self) {
        let _ = rustix::net::shutdown(&self.0, rustix::net::Shutdown::Both);
    }
}

impl AsFd for Conn {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl From<std::os::unix::net::UnixStream> for Conn {
    fn from(s: std::os::unix::net::UnixStream) -> Conn {
        Conn(OwnedFd::from(s))
    }
}

/// A timed-out read or write of a socket with a timeout reports `WouldBlock`: say `TimedOut`.
fn timed(e: rustix::io::Errno) -> io::Error {
    if e == rustix::io::Errno::AGAIN {
        io::Error::new(io::ErrorKind::TimedOut, "timed out")
    } else {
        e.into()
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::io::read(&self.0, &mut *buf) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(timed),
            }
        }
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            // MSG_NOSIGNAL: a peer that went away is an error, not a SIGPIPE.
            match rustix::net::send(&self.0, buf, rustix::net::SendFlags::NOSIGNAL) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(timed),
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a line could not be read.
#[derive(Debug)]
pub enum LineError {
    /// No newline within the cap.
    TooLong(usize),
    /// The read timed out.
    Timeout,
    /// The peer closed in the middle of a line.
    Truncated,
    Io(io::Error),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong(max) => write!(f, "a line longer than {max} bytes"),
            LineError::Timeout => f.write_str("timed out waiting for a line"),
            LineError::Truncated => f.write_str("the connection closed in the middle of a line"),
            LineError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LineError {}

/// Reads `\n`-terminated lines from a stream, each at most `max` bytes, keeping what it read
/// past a line for the next one.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            inner,
            buf: Vec::new(),
            start: 0,
        }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The next line without its newline; `None` at a clean end of the stream.
    pub fn read_line(&mut self, max: usize) -> Result<Option<Vec<u8>>, LineError> {
        let mut scanned = 0;
        loop {
            let pending = &self.buf[self.start..];
            if let Some(i) = pending[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                if end + 1 > max {
                    return Err(LineError::TooLong(max));
                }
                let line = pending[..end].to_vec();
                self.start += end + 1;
                return Ok(Some(line));
            }
            scanned = pending.len();
            if scanned >= max {
                return Err(LineError::TooLong(max));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            let have = self.buf.len();
            let want = (max - have).clamp(1, 128 * 1024);
            self.buf.resize(have + want, 0);
            let n = loop {
                match self.inner.read(&mut self.buf[have..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                        ) =>
                    {
                        self.buf.truncate(have);
                        return Err(LineError::Timeout);
                    }
                    Err(e) => {
                        self.buf.truncate(have);
                        return Err(LineError::Io(e));
                    }
                }
            };
            self.buf.truncate(have + n);
            if n == 0 {
                return if have == 0 {
                    Ok(None)
                } else {
                    Err(LineError::Truncated)
                };
            }
        }
    }
}

/// Writes `msg` as one JSON line.
pub fn send(w: &mut impl Write, msg: &impl serde::Serialize) -> io::Result<()> {
    w.write_all(&crate::proto::line(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_capped() {
        let data: &[u8] = b"one\ntwo\n\nthree";
        let mut r = LineReader::new(data);
        assert_eq!(r.read_line(10).unwrap().unwrap(), b"one");
        assert_eq!(r.read_line(10).unwrap().unwrap(), b"two");
        assert_eq!(r.read_line(10).unwrap().unwrap(), b"");
        assert!(matches!(r.read_line(10), Err(LineError::Truncated)));

        let mut r = LineReader::new(&b"0123456789\nab\n"[..]);
        assert!(matches!(r.read_line(10), Err(LineError::TooLong(10))));
        let mut r = LineReader::new(&b"012345678\nab\n"[..]);
        assert_eq!(r.read_line(10).unwrap().unwrap(), b"012345678");
        assert_eq!(r.read_line(10).unwrap().unwrap(), b"ab");
        assert!(r.read_line(10).unwrap().is_none());
        // A line that never ends is cut off at the cap, not read forever.
        let endless = std::io::repeat(b'x');
        let mut r = LineReader::new(endless);
        assert!(matches!(r.read_line(1000), Err(LineError::TooLong(1000))));
    }

    #[test]
    fn lines_across_short_reads() {
        struct Trickle(Vec<u8>, usize);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() {
                    return Ok(0);
                }
                buf[0] = self.0[self.1];
                self.1 += 1;
                Ok(1)
            }
        }
        let mut r = LineReader::new(Trickle(b"{\"a\":1}\n{\"b\":2}\n".to_vec(), 0));
        assert_eq!(r.read_line(64).unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(r.read_line(64).unwrap().unwrap(), b"{\"b\":2}");
        assert!(r.read_line(64).unwrap().is_none());
    }

    #[test]
    fn a_read_timeout_is_reported() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = Conn::from(a);
        c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        let mut r = LineReader::new(&c);
        assert!(matches!(r.read_line(64), Err(LineError::Timeout)));
    }
}
