//! Salesforce's header-name casing on HTTP/1.1 responses.
//!
//! hyper writes HTTP/1 header names in lower case unless told otherwise. Its
//! `title_case_headers` option (set on the server's HTTP/1 builder) gives `Content-Type`,
//! `Sforce-Locator` and `Sforce-Limit-Info`, but `Sforce-Numberofrecords` and
//! `Www-Authenticate`; and `preserve_header_case` only replays a *request's* casing, through an
//! extension type hyper keeps private. Some clients look headers up case-sensitively, so each
//! connection's writer puts back the exact casing of the names title case cannot produce. Only
//! a response head is touched (a write that starts with the status line, up to its blank line):
//! the replacement names have the same length, so byte counts and bodies never change.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Names whose Salesforce casing title case does not give.
const EXACT: &[&str] = &["Sforce-NumberOfRecords", "WWW-Authenticate"];

/// Rewrites the names of `EXACT` in a response head to their Salesforce casing.
pub fn fix_head(buf: &mut [u8]) {
    if !buf.starts_with(b"HTTP/1.") {
        return;
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(buf.len(), |p| p + 2);
    let mut line = 0;
    while line < end {
        let next = buf[line..end]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(end, |p| line + p + 2);
        for name in EXACT {
            let n = name.len();
            if next - line > n
                && buf[line + n] == b':'
                && buf[line..line + n].eq_ignore_ascii_case(name.as_bytes())
            {
                buf[line..line + n].copy_from_slice(name.as_bytes());
            }
        }
        line = next;
    }
}

/// A connection whose response heads get Salesforce's header casing.
pub struct SalesforceCase<S> {
    inner: S,
}

impl<S> SalesforceCase<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> Self {
        SalesforceCase { inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SalesforceCase<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SalesforceCase<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.starts_with(b"HTTP/1.") {
            let mut head = buf.to_vec();
            fix_head(&mut head);
            return Pin::new(&mut self.inner).poll_write(cx, &head);
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !bufs.iter().any(|b| b.starts_with(b"HTTP/1.")) {
            return Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        }
        let owned: Vec<Vec<u8>> = bufs
            .iter()
            .map(|b| {
                let mut v = b.to_vec();
                fix_head(&mut v);
                v
            })
            .collect();
        let slices: Vec<io::IoSlice<'_>> = owned.iter().map(|v| io::IoSlice::new(v)).collect();
        Pin::new(&mut self.inner).poll_write_vectored(cx, &slices)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An axum-server acceptor that wraps the connections of another (plain TCP or TLS).
#[derive(Clone)]
pub struct SalesforceCaseAcceptor<A> {
    inner: A,
}

impl<A> SalesforceCaseAcceptor<A> {
    /// Wraps the streams `inner` accepts.
    pub fn new(inner: A) -> Self {
        SalesforceCaseAcceptor { inner }
    }
}

impl<I, S, A> axum_server::accept::Accept<I, S> for SalesforceCaseAcceptor<A>
where
    I: 'static,
    S: 'static,
    A: axum_server::accept::Accept<I, S> + 'static,
    A::Future: Send + 'static,
{
    type Stream = SalesforceCase<A::Stream>;
    type Service = A::Service;
    type Future = Pin<
        Box<dyn std::future::Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>,
    >;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((SalesforceCase::new(stream), service))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_get_salesforce_casing_and_bodies_stay() {
        let mut head = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nSforce-Numberofrecords: 2\r\nWww-Authenticate: Token\r\n\r\nsforce-numberofrecords: 9".to_vec();
        let before = head.len();
        fix_head(&mut head);
        let text = String::from_utf8(head).unwrap();
        assert_eq!(text.len(), before);
        assert!(text.contains("\r\nSforce-NumberOfRecords: 2\r\n"), "{text}");
        assert!(text.contains("\r\nWWW-Authenticate: Token\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\nsforce-numberofrecords: 9"),
            "{text}"
        );
    }

    #[test]
    fn other_writes_are_left_alone() {
        let mut body = b"\"Sforce-Numberofrecords: 1\"".to_vec();
        fix_head(&mut body);
        assert_eq!(body, b"\"Sforce-Numberofrecords: 1\"");
    }
}
