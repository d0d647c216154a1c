//! TEST STAND-IN, not Firecracker: a tiny synchronous HTTP/1.1 server side, enough for
//! Firecracker's API: request line, headers, a `Content-Length` body, `Expect: 100-continue`,
//! keep-alive (several requests per connection) and `Connection: close`.

use std::io::{self, BufRead, Read, Write};

/// Longest request line or header line accepted.
const MAX_LINE: usize = 8192;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent, e.g. `PUT`.
    pub method: String,
    /// The absolute path, without query or fragment.
    pub path: String,
    /// `true` for HTTP/1.1, `false` for HTTP/1.0.
    pub http11: bool,
    pub headers: Vec<(String, String)>,
    /// `None` when no body was sent (no or zero `Content-Length`).
    pub body: Option<Vec<u8>>,
}

impl Request {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection must be closed after answering.
    pub fn wants_close(&self) -> bool {
        match self.header("connection") {
            Some(v) if v.eq_ignore_ascii_case("close") => true,
            Some(v) if v.eq_ignore_ascii_case("keep-alive") => false,
            _ => !self.http11,
        }
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection between requests.
    Closed,
    Io(io::Error),
    /// Malformed request: answer 400 and close.
    Bad(String),
    /// Body larger than allowed: answer 413 and close.
    TooLarge {
        size: usize,
        limit: usize,
    },
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads one line (without its CRLF or LF); `Ok(None)` at end of input before any byte.
fn read_line<R: BufRead>(r: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() > MAX_LINE {
            return Err(ReadError::Bad("Header line too long.".into()));
        }
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Bad("Request is not valid UTF-8.".into()))
}

/// Extracts the absolute path from a request target (origin or absolute form).
fn abs_path(target: &str) -> Result<String, ReadError> {
    let rest = match target.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        _ => target,
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Err(ReadError::Bad("Invalid URI.".into()));
    }
    Ok(path.to_string())
}

/// Reads one request. `out` receives a `100 Continue` when the client asks for it.
pub fn read_request<R: BufRead, W: Write>(
    r: &mut R,
    out: &mut W,
    max_payload: usize,
) -> Result<Request, ReadError> {
    // Empty lines before a request line are ignored (RFC 9112, 2.2).
    let line = loop {
        match read_line(r)? {
            None => return Err(ReadError::Closed),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Err(ReadError::Bad("Invalid request line.".into()));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(ReadError::Bad("Unsupported HTTP version.".into())),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Bad("Invalid HTTP method.".into()));
    }
    let path = abs_path(target)?;
    let mut headers = Vec::new();
    loop {
        let Some(h) = read_line(r)? else {
            return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
        };
        if h.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad("Too many headers.".into()));
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(ReadError::Bad(format!("Invalid header: {h}")));
        };
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        path,
        http11,
        headers,
        body: None,
    };
    if let Some(te) = req.header("transfer-encoding") {
        return Err(ReadError::Bad(format!(
            "Unsupported transfer encoding: {te}."
        )));
    }
    let len = match req.header("content-length") {
        None => 0,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| ReadError::Bad(format!("Invalid Content-Length: {v}.")))?,
    };
    if len > max_payload {
        return Err(ReadError::TooLarge {
            size: len,
            limit: max_payload,
        });
    }
    if len > 0 {
        if req
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            out.flush()?;
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        req.body = Some(body);
    }
    Ok(req)
}

/// One response: a status and, except for 204, a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Option<String>,
}

impl Response {
    pub fn no_content() -> Self {
        Response {
            status: 204,
            body: None,
        }
    }

    pub fn json(status: u16, body: String) -> Self {
        Response {
            status,
            body: Some(body),
        }
    }

    /// An error answer: `{"fault_message": "..."}`.
    pub fn fault(status: u16, message: &str) -> Self {
        Response::json(
            status,
            serde_json::json!({ "fault_message": message }).to_string(),
        )
    }
}

/// The reason phrase of a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// Writes `resp`; `close` announces that the connection closes afterwards.
pub fn write_response<W: Write>(w: &mut W, resp: &Response, close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: Firecracker API\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        if close { "close" } else { "keep-alive" }
    );
    if let Some(body) = &resp.body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some(body) = &resp.body {
        bytes.extend_from_slice(body.as_bytes());
    }
    w.write_all(&bytes)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read(raw: &str) -> (Result<Request, ReadError>, Vec<u8>) {
        let mut out = Vec::new();
        let mut r = Cursor::new(raw.as_bytes().to_vec());
        (read_request(&mut r, &mut out, 100), out)
    }

    #[test]
    fn parses_put_with_body() {
        let raw = "PUT /boot-source HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}";
        let req = read(raw).0.unwrap();
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, "/boot-source");
        assert_eq!(req.header("HOST"), Some("localhost"));
        assert_eq!(req.body.as_deref(), Some(&b"{}"[..]));
        assert!(!req.wants_close());
    }

    #[test]
    fn several_requests_on_one_stream() {
        let raw = "GET / HTTP/1.1\r\n\r\nPATCH /vm HTTP/1.1\r\nContent-Length: 3\r\n\
                   Connection: close\r\n\r\nabcGET";
        let mut r = Cursor::new(raw.as_bytes().to_vec());
        let mut out = Vec::new();
        let a = read_request(&mut r, &mut out, 100).unwrap();
        assert_eq!((a.method.as_str(), a.body), ("GET", None));
        let b = read_request(&mut r, &mut out, 100).unwrap();
        assert_eq!(b.body.as_deref(), Some(&b"abc"[..]));
        assert!(b.wants_close());
        // A truncated third request is an I/O error, a clean end is `Closed`.
        assert!(matches!(
            read_request(&mut r, &mut out, 100),
            Err(ReadError::Io(_))
        ));
        assert!(matches!(
            read_request(&mut r, &mut out, 100),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn absolute_form_query_and_http10() {
        let req = read("GET http://localhost/vm/config?x=1 HTTP/1.0\r\n\r\n")
            .0
            .unwrap();
        assert_eq!(req.path, "/vm/config");
        assert!(req.wants_close());
        let req = read("GET http://localhost HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").0;
        let req = req.unwrap();
        assert_eq!(req.path, "/");
        assert!(!req.wants_close());
    }

    #[test]
    fn expect_continue_is_answered() {
        let raw = "PUT /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n1";
        let (req, out) = read(raw);
        assert!(req.is_ok());
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn malformed_requests_are_refused() {
        for raw in [
            "GET /\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "get / HTTP/1.1\r\n\r\n",
            "GET nopath HTTP/1.1\r\n\r\n",
            "PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "PUT / HTTP/1.1\r\nno colon\r\n\r\n",
        ] {
            assert!(matches!(read(raw).0, Err(ReadError::Bad(_))), "{raw:?}");
        }
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE + 10));
        assert!(matches!(read(&long).0, Err(ReadError::Bad(_))));
        let big = "PUT / HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
        assert!(matches!(
            read(big).0,
            Err(ReadError::TooLarge {
                size: 101,
                limit: 100
            })
        ));
        assert!(matches!(read("").0, Err(ReadError::Closed)));
    }

    #[test]
    fn writes_responses() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::no_content(), false).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(s.contains("Connection: keep-alive\r\n"));
        assert!(!s.contains("Content-Length"));
        assert!(s.ends_with("\r\n\r\n"));

        let mut out = Vec::new();
        write_response(&mut out, &Response::fault(400, "bad \"x\""), true).unwrap();
        let s = String::from_utf8(out).unwrap();
        let body = r#"{"fault_message":"bad \"x\""}"#;
        assert!(s.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(s.ends_with(body));
    }
}
