//! The root helper's wire protocol: one JSON line request, one JSON line answer.
//!
//! `{"op": "net.up", "args": {...}}` ->
//! `{"ok": true, "result": {...}}` or `{"ok": false, "error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest request the helper reads, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Error codes the helper answers with. Stable: scripts may match on them.
pub mod code {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const TOO_LARGE: &str = "too_large";
    pub const TIMEOUT: &str = "timeout";
    pub const PERMISSION_DENIED: &str = "permission_denied";
    pub const UNKNOWN_OP: &str = "unknown_op";
    pub const INVALID_NAME: &str = "invalid_name";
    pub const INVALID_PATH: &str = "invalid_path";
    pub const INVALID_ARGS: &str = "invalid_args";
    pub const NOT_FOUND: &str = "not_found";
    pub const CONFLICT: &str = "conflict";
    pub const BUSY: &str = "busy";
    pub const FAILED: &str = "failed";
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub op: String,
    #[serde(default)]
    pub args: Value,
    /// Asks the helper to measure its phases and send them back ([`Response::timing`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub timing: bool,
}

impl Request {
    pub fn new(op: &str, args: Value) -> Request {
        Request {
            op: op.into(),
            args,
            timing: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OpError {
    pub code: String,
    pub message: String,
}

impl OpError {
    pub fn new(code: &str, message: impl Into<String>) -> OpError {
        OpError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for OpError {}

/// The answer to one request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OpError>,
    /// The helper's phases, when the request asked for them (`BANGER_TIMING`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Vec<crate::timing::Span>>,
}

impl Response {
    pub fn ok(result: Value) -> Response {
        Response {
            ok: true,
            result: Some(result),
            error: None,
            timing: None,
        }
    }
    pub fn err(code: &str, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(OpError::new(code, message)),
            timing: None,
        }
    }
    pub fn from_result(r: Result<Value, OpError>) -> Response {
        match r {
            Ok(v) => Response::ok(v),
            Err(e) => Response {
                ok: false,
                result: None,
                error: Some(e),
                timing: None,
            },
        }
    }
    pub fn into_result(self) -> Result<Value, OpError> {
        if self.ok {
            Ok(self.result.unwrap_or(Value::Null))
        } else {
            Err(self.error.unwrap_or_else(|| {
                OpError::new(code::FAILED, "helper answered ok=false without an error")
            }))
        }
    }
    /// One line, newline-terminated.
    pub fn to_line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"ok":false,"error":{"code":"failed","message":"unencodable answer"}}"#.to_vec()
        });
        v.push(b'\n');
        v
    }
}

/// Parses one request line. The error is the answer to send.
pub fn parse_request(line: &[u8]) -> Result<Request, OpError> {
    let req: Request = serde_json::from_slice(line)
        .map_err(|e| OpError::new(code::BAD_REQUEST, format!("malformed request: {e}")))?;
    if !req.args.is_null() && !req.args.is_object() {
        return Err(OpError::new(
            code::BAD_REQUEST,
            "\"args\" must be an object",
        ));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Response::ok(serde_json::json!({"pid": 1}));
        let line = r.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        let back: Response = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            String::from_utf8(Response::err("busy", "x").to_line()).unwrap(),
            "{\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"x\"}}\n"
        );
    }

    #[test]
    fn parse_rejects_bad_shapes() {
        assert!(parse_request(br#"{"op":"ping"}"#).is_ok());
        assert!(parse_request(br#"{"op":"ping","args":{}}"#).is_ok());
        assert!(
            parse_request(br#"{"op":"ping","timing":true}"#)
                .unwrap()
                .timing
        );
        assert_eq!(
            serde_json::to_string(&Request::new("ping", Value::Null)).unwrap(),
            r#"{"op":"ping","args":null}"#
        );
        assert_eq!(
            parse_request(br#"{"op":"ping","args":[1]}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(parse_request(b"nope").unwrap_err().code, "bad_request");
        assert_eq!(
            parse_request(br#"{"args":{}}"#).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            parse_request(br#"{"op":1}"#).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            parse_request(br#"{"op":"x","cmd":"rm -rf /"}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
    }
}
