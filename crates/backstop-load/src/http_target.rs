//! An HTTP endpoint as a Backstop [`Service`] (feature `http`), so a plan can load any
//! server: one request shape sent again and again, answers classified by status.

use std::fmt;
use std::sync::{Arc, Mutex};

use backstop_core::{Error, RejectKind, Rejected, Service};
use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept for reuse; more are closed.
const MAX_IDLE: usize = 1024;

/// Why an HTTP target could not be built, or a request to it failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpTargetError {
    /// The URL is not `http://host[:port]/path` (TLS is not supported).
    #[error("target url {0:?}: must be http://host[:port][/path]")]
    Url(String),
    /// The method, a header name or a header value is not valid HTTP.
    #[error("target {0} is not valid HTTP")]
    Request(&'static str),
    /// Connecting to the server failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The connection failed during the exchange.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered with an error status other than 429 or 503.
    #[error("server answered {0}")]
    Status(StatusCode),
}

/// One HTTP request shape sent to one server over HTTP/1.1 keep-alive connections.
///
/// A 2xx or 3xx answer is `Ok(status)`. 429 is a refusal (`rejected:rate_limited`) and
/// 503 one of `rejected:unavailable`, so a Backstop server's refusals show as refusals in
/// the report (`backstop_core::http` maps them the other way); any other status, and
/// any connection failure, is an error. The body is read to the end, so the latency is
/// the whole answer's. Cheap to clone: clones share the idle connections.
#[derive(Clone)]
pub struct HttpTarget {
    inner: Arc<Shape>,
    idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
}

/// What every request looks like.
#[derive(Clone)]
struct Shape {
    addr: String,
    authority: HeaderValue,
    path: Uri,
    method: Method,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl fmt::Debug for HttpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTarget")
            .field("addr", &self.inner.addr)
            .field("method", &self.inner.method)
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl HttpTarget {
    /// `GET url` with no headers and no body.
    ///
    /// ```
    /// use backstop_load::HttpTarget;
    ///
    /// let target = HttpTarget::new("http://127.0.0.1:8080/chat")?
    ///     .method("POST")?
    ///     .header("content-type", "application/json")?
    ///     .body(r#"{"prompt":"hello"}"#);
    /// assert!(HttpTarget::new("https://example.com/").is_err());
    /// # Ok::<(), backstop_load::HttpTargetError>(())
    /// ```
    pub fn new(url: &str) -> Result<Self, HttpTargetError> {
        let bad = || HttpTargetError::Url(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        let port = uri.port_u16().unwrap_or(80);
        let authority = uri.authority().ok_or_else(bad)?.as_str();
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Self {
            inner: Arc::new(Shape {
                addr,
                authority: HeaderValue::from_str(authority).map_err(|_| bad())?,
                path,
                method: Method::GET,
                headers: Vec::new(),
                body: Bytes::new(),
            }),
            idle: Arc::default(),
        })
    }

    fn inner_mut(&mut self) -> &mut Shape {
        Arc::make_mut(&mut self.inner)
    }

    /// The same target with another method (`POST`, …).
    pub fn method(mut self, method: &str) -> Result<Self, HttpTargetError> {
        let method = method
            .parse()
            .map_err(|_| HttpTargetError::Request("method"))?;
        self.inner_mut().method = method;
        Ok(self)
    }

    /// The same target sending one more header.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, HttpTargetError> {
        let name =
            HeaderName::try_from(name).map_err(|_| HttpTargetError::Request("header name"))?;
        let value =
            HeaderValue::try_from(value).map_err(|_| HttpTargetError::Request("header value"))?;
        self.inner_mut().headers.push((name, value));
        Ok(self)
    }

    /// The same target sending `body` with every request.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.inner_mut().body = body.into();
        self
    }

    async fn connection(&self) -> Result<SendRequest<Full<Bytes>>, HttpTargetError> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        if let Some(sender) = reused.filter(|sender| !sender.is_closed()) {
            return Ok(sender);
        }
        let inner = &self.inner;
        let stream =
            TcpStream::connect(&inner.addr)
                .await
                .map_err(|source| HttpTargetError::Connect {
                    addr: inner.addr.clone(),
                    source,
                })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        // The connection's driver ends when the sender is dropped or the server closes.
        tokio::spawn(connection);
        Ok(sender)
    }

    async fn exchange(&self) -> Result<StatusCode, HttpTargetError> {
        let mut sender = self.connection().await?;
        sender.ready().await?;
        let inner = &self.inner;
        let mut request = Request::new(Full::new(inner.body.clone()));
        *request.method_mut() = inner.method.clone();
        *request.uri_mut() = inner.path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, inner.authority.clone());
        for (name, value) in &inner.headers {
            headers.append(name.clone(), value.clone());
        }
        let response = sender.send_request(request).await?;
        let status = response.status();
        // Read the whole answer: the latency is the body's too, and the connection is
        // reusable only once the body is consumed.
        response.into_body().collect().await?;
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
        Ok(status)
    }
}

impl<Req: Send> Service<Req> for HttpTarget {
    type Response = StatusCode;
    type Error = Error<HttpTargetError>;

    async fn call(&self, _req: Req) -> Result<StatusCode, Error<HttpTargetError>> {
        let status = self.exchange().await.map_err(Error::Inner)?;
        match status.as_u16() {
            200..=399 => Ok(status),
            429 => Err(Error::Rejected(Rejected::new(RejectKind::RateLimited {
                quota: 0,
            }))),
            503 => Err(Error::Rejected(Rejected::new(RejectKind::Unavailable))),
            _ => Err(Error::Inner(HttpTargetError::Status(status))),
        }
    }
}
