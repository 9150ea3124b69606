//! Why a Kafka connection ended.

/// An error that closes one connection (never the listener). Protocol-level refusals that
/// a client can handle are answered with Kafka error codes instead and are not errors here.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame length {0} out of bounds")]
    FrameLength(i32),
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("unsupported {api} v{version}")]
    UnsupportedVersion { api: &'static str, version: i16 },
    #[error("undecodable {api} request: {reason}")]
    Undecodable { api: &'static str, reason: String },
    #[error("{0} before SASL authentication")]
    Unauthenticated(&'static str),
    #[error("SASL: {0}")]
    Sasl(String),
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("encoding the {api} response: {reason}")]
    Encode { api: &'static str, reason: String },
    #[error("request not handled: {0}")]
    Unhandled(String),
    #[error("blocking task failed: {0}")]
    Task(String),
}

impl KafkaError {
    /// A client hanging up or failing to log in: routine, not worth a warning.
    pub fn is_routine(&self) -> bool {
        matches!(
            self,
            KafkaError::Io(_) | KafkaError::Sasl(_) | KafkaError::Unauthenticated(_)
        )
    }
}
