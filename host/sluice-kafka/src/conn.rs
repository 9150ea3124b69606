//! One Kafka connection: length-prefixed frames with bounds, the SASL state (who this
//! connection is), decoding, then the authorization filter and the handler; the response
//! goes back in the same frame format. Only this module touches the socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use sluice_auth::Principal;

use crate::authz::{self, Access, Authorized};
use crate::{Broker, KafkaError, MAX_FRAME, admin, api_name, code, supported};

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves an accepted TCP connection, after a TLS handshake when TLS is configured.
pub async fn accept(b: Arc<Broker>, stream: tokio::net::TcpStream) -> Result<(), KafkaError> {
    let host = stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    match b.cfg.tls.clone() {
        None => serve(b, stream, host).await,
        Some(acceptor) => {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(b, tls, host).await,
                Ok(Err(e)) => Err(KafkaError::Tls(e.to_string())),
                Err(_) => Err(KafkaError::Tls("timed out".into())),
            }
        }
    }
}

/// Who the connection is.
struct Session {
    /// The identity once SASL succeeded (none while auth is off).
    who: Option<Arc<Principal>>,
    authenticated: bool,
    /// After a v0 SaslHandshake the next frame is the bare SASL token.
    raw_sasl: bool,
    /// Close after this response, for this reason (a failed SASL login hears why first).
    closing: Option<String>,
    /// The address the client connected from (shown with its group memberships).
    host: String,
}

/// A decoded request frame.
pub struct Frame {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub request: RequestKind,
}

/// Serves one connection until the client hangs up, the server shuts down or the client
/// breaks the protocol; `host` is the client's address.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    b: Arc<Broker>,
    mut stream: S,
    host: String,
) -> Result<(), KafkaError> {
    let mut session = Session {
        who: None,
        authenticated: b.cfg.auth.is_none(),
        raw_sasl: false,
        closing: None,
        host,
    };
    loop {
        let Some(frame) = read_frame(&b, &mut stream).await? else {
            return Ok(());
        };
        if session.raw_sasl {
            session.raw_sasl = false;
            session.who = sasl_plain(&b, &frame).map_err(KafkaError::Sasl)?;
            session.authenticated = true;
            stream.write_all(&0i32.to_be_bytes()).await?;
            continue;
        }
        let Some(frame) = decode(&mut stream, frame).await? else {
            continue;
        };
        let started = Instant::now();
        let (correlation, api, version) = (frame.header.correlation_id, frame.api, frame.version);
        if let Some(resp) = answer(&b, &mut session, frame).await? {
            // The ApiVersions response header is always v0.
            let header_version = match api {
                ApiKey::ApiVersions => 0,
                _ => api.response_header_version(version),
            };
            write_response(
                &mut stream,
                api,
                correlation,
                header_version,
                &resp,
                version,
            )
            .await?;
        }
        sluice_common::telemetry::telemetry().kafka_request(api_name(api), started.elapsed());
    }
}

/// Reads one frame; none when the client hung up or the server is shutting down.
async fn read_frame<S: AsyncRead + Unpin>(
    b: &Broker,
    stream: &mut S,
) -> Result<Option<Bytes>, KafkaError> {
    let mut len = [0u8; 4];
    tokio::select! {
        r = stream.read_exact(&mut len) => match r {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        },
        _ = b.shutdown.cancelled() => return Ok(None),
    }
    let len = i32::from_be_bytes(len);
    if len < 8 || len as usize > MAX_FRAME {
        return Err(KafkaError::FrameLength(len));
    }
    let mut frame = vec![0u8; len as usize];
    stream.read_exact(&mut frame).await?;
    Ok(Some(Bytes::from(frame)))
}

/// What a frame's bytes decode to.
pub enum Decoded {
    Frame(Box<Frame>),
    /// An ApiVersions of a version we do not serve: answered with v0 and our ranges.
    OldApiVersions {
        correlation: i32,
    },
}

/// Decodes a frame's bytes (what follows the length). Every input, however malformed,
/// gives a value or an error: the codec reads lengths from the wire, so a decoding bug
/// must cost this connection, never the process. Fuzzed (`fuzz/`).
pub fn decode_frame(mut buf: Bytes) -> Result<Decoded, KafkaError> {
    if buf.len() < 8 {
        return Err(KafkaError::FrameLength(buf.len() as i32));
    }
    let key = i16::from_be_bytes([buf[0], buf[1]]);
    let version = i16::from_be_bytes([buf[2], buf[3]]);
    let api = ApiKey::try_from(key).map_err(|_| KafkaError::UnknownApi(key))?;
    if !supported(api, version) {
        if api == ApiKey::ApiVersions {
            let correlation = i32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            return Ok(Decoded::OldApiVersions { correlation });
        }
        return Err(KafkaError::UnsupportedVersion {
            api: api_name(api),
            version,
        });
    }
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let header = RequestHeader::decode(&mut buf, api.request_header_version(version))?;
        let request = RequestKind::decode(api, &mut buf, version)?;
        Ok::<_, anyhow::Error>((header, request))
    }));
    let undecodable = |reason: String| KafkaError::Undecodable {
        api: api_name(api),
        reason,
    };
    let (header, request) = decoded
        .map_err(|_| undecodable("the decoder panicked".into()))?
        .map_err(|e| undecodable(e.to_string()))?;
    Ok(Decoded::Frame(Box::new(Frame {
        api,
        version,
        header,
        request,
    })))
}

/// Decodes a frame (at least 8 bytes), or answers a too-new ApiVersions with v0 and our
/// ranges (the client retries with a version we serve) and returns none.
async fn decode<S: AsyncWrite + Unpin>(
    stream: &mut S,
    buf: Bytes,
) -> Result<Option<Frame>, KafkaError> {
    match decode_frame(buf)? {
        Decoded::Frame(f) => Ok(Some(*f)),
        Decoded::OldApiVersions { correlation } => {
            let body = admin::api_versions(code::UNSUPPORTED_VERSION).into();
            write_response(stream, ApiKey::ApiVersions, correlation, 0, &body, 0).await?;
            Ok(None)
        }
    }
}

/// The response to one request (none for Produce with acks=0): SASL here, everything else
/// through the authorization filter and its handler.
async fn answer(
    b: &Arc<Broker>,
    session: &mut Session,
    frame: Frame,
) -> Result<Option<ResponseKind>, KafkaError> {
    let Frame {
        api,
        version,
        header,
        request,
    } = frame;
    if !session.authenticated
        && !matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        return Err(KafkaError::Unauthenticated(api_name(api)));
    }
    match request {
        RequestKind::SaslHandshake(r) => {
            let plain = r.mechanism.as_str() == "PLAIN";
            session.raw_sasl = plain && version == 0;
            let body = SaslHandshakeResponse::default()
                .with_error_code(if plain {
                    code::NONE
                } else {
                    code::UNSUPPORTED_SASL_MECHANISM
                })
                .with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]);
            Ok(Some(body.into()))
        }
        RequestKind::SaslAuthenticate(_) if session.authenticated && session.who.is_some() => {
            Err(KafkaError::Sasl("already authenticated".into()))
        }
        RequestKind::SaslAuthenticate(r) => match sasl_plain(b, &r.auth_bytes) {
            Ok(p) => {
                session.who = p;
                session.authenticated = true;
                Ok(Some(SaslAuthenticateResponse::default().into()))
            }
            // The client hears why, then the connection closes.
            Err(e) => {
                let body = SaslAuthenticateResponse::default()
                    .with_error_code(code::SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(StrBytes::from_string(e.clone())));
                session.closing = Some(e);
                Ok(Some(body.into()))
            }
        },
        request => {
            let access =
                Access::new(b.cfg.auth.is_some(), session.who.clone()).with_owned(b.owned.clone());
            match authz::authorize(&access, request, version) {
                Authorized::Refused(resp) => Ok(Some(resp)),
                Authorized::Serve(request, denied) => {
                    let resp = crate::handle(b, &header, request, version, &session.host).await?;
                    Ok(resp.map(|mut r| {
                        denied.apply(&mut r);
                        r
                    }))
                }
            }
        }
    }
}

/// SASL/PLAIN `authzid NUL user NUL password`: Ok(None) when auth is off (anyone may).
fn sasl_plain(b: &Broker, bytes: &[u8]) -> Result<Option<Arc<Principal>>, String> {
    let Some(auth) = &b.cfg.auth else {
        return Ok(None);
    };
    let parts: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
    let [_, user, password] = parts.as_slice() else {
        return Err("malformed SASL/PLAIN message".into());
    };
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return Err("SASL/PLAIN user and password must be UTF-8".into());
    };
    match auth.authenticate_plain(user, password) {
        Some(p) => {
            tracing::debug!(identity = %p.name, "kafka client authenticated");
            Ok(Some(p))
        }
        None => {
            tracing::info!(user, "kafka SASL/PLAIN authentication failed");
            Err(format!("authentication failed for user {user}"))
        }
    }
}

/// Writes one response frame.
async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    api: ApiKey,
    correlation: i32,
    header_version: i16,
    body: &ResponseKind,
    version: i16,
) -> Result<(), KafkaError> {
    let encode_err = |e: anyhow::Error| KafkaError::Encode {
        api: api_name(api),
        reason: e.to_string(),
    };
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation)
        .encode(&mut buf, header_version)
        .map_err(encode_err)?;
    body.encode(&mut buf, version).map_err(encode_err)?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&buf).await?;
    Ok(())
}
