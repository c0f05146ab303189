use kafka_protocol::error::ResponseError;
use std::fmt;

/// Everything that can go wrong talking to a share group. Each variant names the broker and
/// the API involved so that a log line alone tells where to look.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// TCP connect, read or write failed.
    #[error("{broker}: {api}: I/O error ({kind:?}): {message}")]
    Io {
        /// The broker, as in `broker 1 (127.0.0.1:9092)`.
        broker: String,
        /// The Kafka API, as in `ShareFetch`.
        api: &'static str,
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
        /// The I/O error's text.
        message: String,
    },
    /// No response within the request timeout.
    #[error("{broker}: {api}: no response within {timeout_ms} ms")]
    Timeout {
        /// The broker, as in `broker 1 (127.0.0.1:9092)`.
        broker: String,
        /// The Kafka API, as in `ShareFetch`.
        api: &'static str,
        /// How long it waited.
        timeout_ms: u64,
    },
    /// The broker answered with a Kafka error code.
    #[error("{broker}: {api}: {name} (error code {code}){}{}", context_suffix(.context), message_suffix(.message))]
    Broker {
        /// The broker, as in `broker 1 (127.0.0.1:9092)`.
        broker: String,
        /// The Kafka API, as in `ShareFetch`.
        api: &'static str,
        /// The Kafka error code.
        code: i16,
        /// The code's Kafka name, as in `INVALID_RECORD_STATE`.
        name: String,
        /// What the error is about, e.g. "group g" or "partition orders-3".
        context: String,
        /// The broker's error message, if it sent one.
        message: Option<String>,
    },
    /// The broker lacks an API or version this client needs (e.g. share groups disabled).
    #[error("{broker}: {detail}")]
    Unsupported {
        /// The broker, as in `broker 1 (127.0.0.1:9092)`.
        broker: String,
        /// What is missing.
        detail: String,
    },
    /// A frame could not be encoded or decoded.
    #[error("{broker}: {api}: protocol error: {detail}")]
    Protocol {
        /// The broker, as in `broker 1 (127.0.0.1:9092)`.
        broker: String,
        /// The Kafka API, as in `ShareFetch`.
        api: &'static str,
        /// What was wrong with the frame.
        detail: String,
    },
    /// The caller used the consumer wrongly (bad config, acking a record it does not hold).
    #[error("{0}")]
    Usage(String),
    /// The cluster metadata lacks something needed (a leader, a broker's address); the
    /// consumer refreshes metadata and retries.
    #[error("metadata: {0}")]
    Metadata(String),
    /// A share session ended (connection lost, session reset by the broker, or a cancelled
    /// call): the records acquired in it are released by the broker and redelivered.
    #[error("share session lost: {0}")]
    SessionLost(String),
    /// The consumer's membership task has stopped; the consumer must be recreated.
    #[error("share group membership stopped: {0}")]
    MembershipStopped(String),
}

fn context_suffix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!(" for {context}")
    }
}

fn message_suffix(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The Kafka error code, when the broker returned one.
    pub fn code(&self) -> Option<i16> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for errors that the consumer handles itself by reconnecting, refreshing metadata or
    /// reopening a share session; `poll` does not return these.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Metadata(_)
            | Error::SessionLost(_) => true,
            Error::Broker { code, .. } => is_retriable_code(*code),
            _ => false,
        }
    }

    pub(crate) fn broker(
        broker: impl fmt::Display,
        api: &'static str,
        code: i16,
        context: impl Into<String>,
        message: Option<&str>,
    ) -> Error {
        Error::Broker {
            broker: broker.to_string(),
            api,
            code,
            name: code_name(code),
            context: context.into(),
            message: message.map(str::to_owned),
        }
    }
}

pub(crate) fn is_retriable_code(code: i16) -> bool {
    // UNKNOWN_MEMBER_ID and FENCED_MEMBER_EPOCH are handled by rejoining the group.
    matches!(code, 25 | 110) || ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

/// The Java-style name of a Kafka error code, e.g. 122 -> "SHARE_SESSION_NOT_FOUND".
pub fn code_name(code: i16) -> String {
    if code == 0 {
        return "NONE".to_owned();
    }
    match ResponseError::try_from_code(code) {
        Some(ResponseError::Unknown(_)) | None => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka_spelling() {
        assert_eq!(code_name(122), "SHARE_SESSION_NOT_FOUND");
        assert_eq!(code_name(121), "INVALID_RECORD_STATE");
        assert_eq!(code_name(110), "FENCED_MEMBER_EPOCH");
        assert_eq!(code_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(code_name(-1), "UNKNOWN_SERVER_ERROR");
    }

    #[test]
    fn display_names_broker_api_and_partition() {
        let e = Error::broker("node 1 (h:9092)", "ShareFetch", 6, "partition t-0", None);
        assert_eq!(
            e.to_string(),
            "node 1 (h:9092): ShareFetch: NOT_LEADER_OR_FOLLOWER (error code 6) for partition t-0"
        );
        assert!(e.is_retriable());
    }
}
