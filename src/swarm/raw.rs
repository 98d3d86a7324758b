//! Where the engine is, and one plain `GET` for the replies bollard cannot carry.
//!
//! bollard's `Task` model has no `NetworksAttachments`, the field holding task addresses, so
//! `GET /tasks` is read here, over the same endpoint, with hyper (bollard's own HTTP stack).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::error::SwarmError;

pub(super) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// A Docker endpoint this crate can talk to (no TLS: bollard is built without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoint {
    /// Path of the engine's unix socket.
    Unix(String),
    /// `host:port` of a plain-HTTP engine.
    Tcp(String),
}

impl Endpoint {
    /// `unix:///path`, a plain path, `tcp://host[:port]` or `http://host[:port]` (port 2375 by
    /// default, as the docker CLI).
    pub fn parse(s: &str) -> Result<Endpoint, SwarmError> {
        let invalid = |reason| SwarmError::InvalidEndpoint {
            endpoint: s.to_string(),
            reason,
        };
        let s_trim = s.trim();
        if let Some(path) = s_trim.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("empty socket path"));
            }
            return Ok(Endpoint::Unix(path.to_string()));
        }
        let rest = s_trim
            .strip_prefix("tcp://")
            .or_else(|| s_trim.strip_prefix("http://"));
        if let Some(rest) = rest {
            let authority = rest.split('/').next().unwrap_or_default();
            if authority.is_empty() {
                return Err(invalid("no host"));
            }
            let has_port = match authority.rfind(':') {
                // `[::1]` has colons but no port; `[::1]:2375` and `host:2375` have one.
                Some(i) => !authority[i..].contains(']'),
                None => false,
            };
            if has_port {
                let port = &authority[authority.rfind(':').map_or(0, |i| i + 1)..];
                if port.parse::<u16>().is_err() {
                    return Err(invalid("bad port"));
                }
                return Ok(Endpoint::Tcp(authority.to_string()));
            }
            return Ok(Endpoint::Tcp(format!("{authority}:2375")));
        }
        if s_trim.contains("://") {
            return Err(invalid(
                "unsupported scheme (unix://, tcp:// and http:// are; TLS and ssh are not built in)",
            ));
        }
        if s_trim.is_empty() {
            return Err(invalid("empty"));
        }
        Ok(Endpoint::Unix(s_trim.to_string()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{p}"),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// `GET path_and_query` -> the body of a 2xx reply; any other status is [`SwarmError::Api`]
/// with the engine's `message`.
/// `value` percent-encoded for a URL query (RFC 3986: every byte but the unreserved ones).
pub(super) fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) async fn get(
    endpoint: &Endpoint,
    path_and_query: &str,
    op: &'static str,
    timeout: Duration,
) -> Result<Bytes, SwarmError> {
    let unreachable = |source: Box<dyn std::error::Error + Send + Sync>| SwarmError::Unreachable {
        endpoint: endpoint.to_string(),
        op,
        source,
    };
    let attempt = async {
        match endpoint {
            Endpoint::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(|e| unreachable(e.into()))?;
                exchange(TokioIo::new(s), "localhost", path_and_query).await
            }
            Endpoint::Tcp(authority) => {
                let s = tokio::net::TcpStream::connect(authority.as_str())
                    .await
                    .map_err(|e| unreachable(e.into()))?;
                // Lists are small and latency matters more than packet count.
                let _ = s.set_nodelay(true);
                exchange(TokioIo::new(s), authority, path_and_query).await
            }
        }
        .map_err(|e| unreachable(e.into()))
    };
    let (status, body) = tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| SwarmError::Timeout { op, after: timeout })??;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(SwarmError::Api {
            op,
            status,
            message: error_message(&body),
        })
    }
}

async fn exchange<T>(io: T, host: &str, path_and_query: &str) -> Result<(u16, Bytes), hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let request = hyper::Request::get(path_and_query)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new());
    let request = match request {
        Ok(r) => r,
        // Only a path with characters invalid in a URI gets here; ours are built from
        // constants and the API version.
        Err(_) => {
            return Ok((
                400,
                Bytes::from_static(b"{\"message\":\"invalid request path\"}"),
            ));
        }
    };
    let response = async move {
        let res = sender.send_request(request).await?;
        let status = res.status().as_u16();
        let body = res.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    };
    // The connection task is driven here, not spawned: it ends when the reply is read
    // (`Connection: close`). Its own error, if any, also fails `response`, which is reported.
    let (_, reply) = tokio::join!(conn, response);
    reply
}

/// The engine's `{"message": "..."}`, or the body as text.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Msg {
        message: String,
    }
    match serde_json::from_slice::<Msg>(body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_query_value_is_percent_encoded_but_for_unreserved_bytes() {
        assert_eq!(
            query_value(r#"{"service":["ab-1_x.y~"]}"#),
            "%7B%22service%22%3A%5B%22ab-1_x.y~%22%5D%7D"
        );
    }

    use super::*;

    #[test]
    fn endpoints_parse_as_the_docker_cli_reads_them() {
        let ok = |s: &str| Endpoint::parse(s).expect(s);
        assert_eq!(
            ok("unix:///var/run/docker.sock"),
            Endpoint::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            ok("/run/docker.sock"),
            Endpoint::Unix("/run/docker.sock".into())
        );
        assert_eq!(
            ok("tcp://127.0.0.1:2376"),
            Endpoint::Tcp("127.0.0.1:2376".into())
        );
        assert_eq!(ok("http://docker:80/"), Endpoint::Tcp("docker:80".into()));
        assert_eq!(ok("tcp://docker"), Endpoint::Tcp("docker:2375".into()));
        assert_eq!(ok("tcp://[::1]"), Endpoint::Tcp("[::1]:2375".into()));
        assert_eq!(ok("tcp://[::1]:1234"), Endpoint::Tcp("[::1]:1234".into()));
    }

    #[test]
    fn unusable_endpoints_are_errors_that_say_why() {
        for bad in [
            "",
            "unix://",
            "tcp://",
            "tcp://host:port",
            "https://h:2376",
            "ssh://me@h",
            "npipe:////./pipe/x",
        ] {
            match Endpoint::parse(bad) {
                Err(SwarmError::InvalidEndpoint { endpoint, .. }) => assert_eq!(endpoint, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn error_messages_come_from_the_json_body_or_the_text() {
        assert_eq!(
            error_message(br#"{"message":"No such container: x"}"#),
            "No such container: x"
        );
        assert_eq!(error_message(b"page not found\n"), "page not found");
        assert_eq!(error_message(b""), "");
    }

    #[tokio::test]
    async fn a_missing_socket_is_unreachable_and_transient() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.sock");
        let ep = Endpoint::Unix(path.to_string_lossy().into_owned());
        let err = get(&ep, "/v1.41/tasks", "list tasks", Duration::from_secs(1))
            .await
            .expect_err("no engine there");
        assert!(
            matches!(
                err,
                SwarmError::Unreachable {
                    op: "list tasks",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn a_reply_is_read_whole_and_an_error_status_carries_the_message() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fake.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let server = async {
            for reply in [
                // chunked, as the engine sends long lists
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
                "HTTP/1.1 404 Not Found\r\nContent-Length: 23\r\n\r\n{\"message\":\"no such x\"}",
            ] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.expect("read request");
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                s.write_all(reply.as_bytes()).await.expect("write");
                s.shutdown().await.expect("shutdown");
                assert!(req.starts_with("GET /v1.41/tasks HTTP/1.1\r\n"), "{req}");
            }
        };
        let ep = Endpoint::Unix(path.to_string_lossy().into_owned());
        let client = async {
            let ok = get(&ep, "/v1.41/tasks", "list tasks", Duration::from_secs(5)).await;
            let err = get(&ep, "/v1.41/tasks", "list tasks", Duration::from_secs(5)).await;
            (ok, err)
        };
        let ((ok, err), ()) = tokio::join!(client, server);
        assert_eq!(&ok.expect("200")[..], b"[1,2]");
        match err {
            Err(SwarmError::Api {
                status: 404,
                message,
                ..
            }) => assert_eq!(message, "no such x"),
            other => panic!("{other:?}"),
        }
    }
}
