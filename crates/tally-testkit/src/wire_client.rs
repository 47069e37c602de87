//! A blocking Kafka protocol client that works one frame at a time. Tests use it to send exact
//! requests at exact versions, and raw bytes that no real client would send.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

pub struct WireClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl WireClient {
    pub fn connect(addr: SocketAddr) -> Result<WireClient> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(WireClient {
            stream,
            next_correlation_id: 1,
        })
    }

    /// How long a read waits for the broker (30 s unless set).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        let _ = self.stream.set_read_timeout(timeout);
    }

    /// Encodes header + body of `request` at `version` (without the size prefix).
    pub fn encode<Req: Request>(
        request: &Req,
        version: i16,
        correlation_id: i32,
    ) -> Result<Vec<u8>> {
        let header = RequestHeader::default()
            .with_request_api_key(Req::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("tally-testkit")));
        let mut buf = BytesMut::new();
        header.encode(&mut buf, Req::header_version(version))?;
        request.encode(&mut buf, version)?;
        Ok(buf.to_vec())
    }

    /// Sends `request` and decodes its response.
    pub fn send<Req: Request>(&mut self, request: &Req, version: i16) -> Result<Req::Response> {
        let correlation_id = self.send_only(request, version)?;
        self.receive::<Req>(version, correlation_id)
    }

    /// Sends without waiting (pipelining); pair with [`WireClient::receive`].
    pub fn send_only<Req: Request>(&mut self, request: &Req, version: i16) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let body = Self::encode(request, version, correlation_id)?;
        self.send_frame(&body)?;
        Ok(correlation_id)
    }

    pub fn receive<Req: Request>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> Result<Req::Response> {
        let Some(frame) = self.read_frame()? else {
            bail!("connection closed by the broker");
        };
        let mut bytes = Bytes::from(frame);
        let response_header_version = if Req::KEY == ApiKey::ApiVersions as i16 {
            0
        } else {
            <Req::Response as kafka_protocol::protocol::HeaderVersion>::header_version(version)
        };
        let header = ResponseHeader::decode(&mut bytes, response_header_version)?;
        if header.correlation_id != correlation_id {
            bail!(
                "correlation id {} does not match request {}",
                header.correlation_id,
                correlation_id
            );
        }
        let response = Req::Response::decode(&mut bytes, version)?;
        if bytes.has_remaining() {
            bail!("{} bytes left after the response", bytes.remaining());
        }
        Ok(response)
    }

    /// Writes one frame: 4-byte size then `body`.
    pub fn send_frame(&mut self, body: &[u8]) -> Result<()> {
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        self.send_raw(&frame)
    }

    /// Writes bytes as they are, frame prefix or not.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Reads one frame body; `None` when the broker closed the connection.
    pub fn read_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let mut size = [0u8; 4];
        match self.stream.read_exact(&mut size) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        }
        let size = i32::from_be_bytes(size);
        if size < 0 {
            bail!("negative frame size {size}");
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Some(body))
    }

    /// True when the broker has closed the connection (reads EOF or reset within the timeout).
    pub fn is_closed_by_peer(&mut self) -> bool {
        matches!(self.read_frame(), Ok(None))
    }
}
