//! `dynamo bench --http`: the load generator's requests sent to the nodes' HTTP API instead of
//! QUIC, with the same keys, values and contexts, so the two paths compare in one report.
//!
//! This module must not know how nodes serve requests: it speaks the documented HTTP API.

use std::net::SocketAddr;

use anyhow::{Context as _, Result, bail};
use dynamo_client::client::ClientError;
use rand::Rng;
use rand::rngs::SmallRng;

/// The HTTP API of the nodes `--http` names (`dynamo bench --http`).
pub(crate) struct HttpTarget {
    /// A client presenting the bench's certificate.
    pub(crate) client: reqwest::Client,
    /// `https://node.dynamo:PORT` of each node.
    pub(crate) bases: Vec<String>,
}

impl HttpTarget {
    /// A target for `addresses`, presenting `tls`'s identity (the node certificates carry the
    /// name `node.dynamo`, resolved here to each address).
    pub(crate) fn new(
        tls: &dynamo_client::tls::TlsConfig,
        addresses: &[SocketAddr],
    ) -> Result<Self> {
        let Some(first) = addresses.first() else {
            bail!("--http needs at least one address");
        };
        if addresses.iter().any(|a| a.ip() != first.ip()) {
            bail!(
                "--http addresses must share one IP address (they are all reached as node.dynamo)"
            );
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls.https_client_config())
            .resolve(dynamo_client::tls::NODE_SERVER_NAME, *first)
            .pool_max_idle_per_host(4096)
            .build()
            .context("building the HTTP client")?;
        let bases = addresses
            .iter()
            .map(|a| {
                format!(
                    "https://{}:{}",
                    dynamo_client::tls::NODE_SERVER_NAME,
                    a.port()
                )
            })
            .collect();
        Ok(Self { client, bases })
    }

    pub(crate) fn url(&self, rng: &mut SmallRng, bucket: &str, key: &[u8]) -> String {
        let base = &self.bases[rng.random_range(0..self.bases.len())];
        format!(
            "{base}/buckets/{bucket}/keys/{}",
            String::from_utf8_lossy(key)
        )
    }

    /// A get: the context, and whether the key had siblings.
    pub(crate) async fn read(&self, url: &str) -> Result<(String, bool), ClientError> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| http_error(&e))?;
        let status = response.status().as_u16();
        let context = response
            .headers()
            .get("x-dynamo-context")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let _ = response.bytes().await.map_err(|e| http_error(&e))?;
        match status {
            200 | 404 => Ok((context, false)),
            300 => Ok((context, true)),
            other => Err(ClientError::Unexpected(format!("HTTP {other}"))),
        }
    }

    pub(crate) async fn write(
        &self,
        url: &str,
        value: Vec<u8>,
        context: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut request = self.client.put(url).body(value);
        if let Some(context) = context {
            request = request.header("x-dynamo-context", context);
        }
        let response = request.send().await.map_err(|e| http_error(&e))?;
        let status = response.status().as_u16();
        let _ = response.bytes().await.map_err(|e| http_error(&e))?;
        if status == 200 {
            Ok(())
        } else {
            Err(ClientError::Unexpected(format!("HTTP {status}")))
        }
    }
}

fn http_error(error: &reqwest::Error) -> ClientError {
    ClientError::Unexpected(format!("HTTP: {error}"))
}
