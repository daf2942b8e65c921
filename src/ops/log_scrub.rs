//! Log output that never carries a secret: every formatted log line passes through a
//! [`Redactor`] (the configured token and webhook secrets, token-shaped strings) before it is
//! written. So an error text that echoes a secret (a GitLab error body repeating what it was
//! sent, a URL with a token parameter) is scrubbed wherever it is logged from.

use std::io::Write;
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;

use crate::redact::Redactor;

/// Wraps a [`MakeWriter`] (e.g. `std::io::stderr`) so that what is written is scrubbed.
#[derive(Debug, Clone)]
pub struct Scrubbed<M> {
    redactor: Arc<Redactor>,
    inner: M,
}

impl<M> Scrubbed<M> {
    pub fn new(redactor: Redactor, inner: M) -> Self {
        Self {
            redactor: Arc::new(redactor),
            inner,
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Scrubbed<M> {
    type Writer = ScrubbedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubbedWriter {
            redactor: self.redactor.clone(),
            inner: self.inner.make_writer(),
        }
    }
}

/// One event's writer. `tracing-subscriber` formats an event completely and writes it with one
/// call, so a secret is never split across two writes.
pub struct ScrubbedWriter<W> {
    redactor: Arc<Redactor>,
    inner: W,
}

impl<W: Write> Write for ScrubbedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(self.redactor.text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn logged_errors_lose_configured_secrets_and_token_shapes() {
        let out = Capture::default();
        let sink = out.clone();
        let writer = Scrubbed::new(
            Redactor::with_known(["configured-token-9d8c7b6a".to_owned()]),
            move || sink.clone(),
        );
        for json in [false, true] {
            let builder = tracing_subscriber::fmt().with_writer(writer.clone());
            let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
                Box::new(builder.json().finish())
            } else {
                Box::new(builder.finish())
            };
            tracing::subscriber::with_default(subscriber, || {
                tracing::error!(
                    error = "gitlab answered 401: token configured-token-9d8c7b6a is not valid; retry with glpat-Zz9Yy8Xx7Ww6",
                    "event failed"
                );
            });
        }
        let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf8");
        assert_eq!(text.matches("event failed").count(), 2, "{text}");
        assert!(text.contains("gitlab answered 401"), "{text}");
        assert!(!text.contains("configured-token-9d8c7b6a"), "{text}");
        assert!(!text.contains("Zz9Yy8Xx7Ww6"), "{text}");
    }
}
