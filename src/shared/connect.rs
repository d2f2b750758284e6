//! One connection to the shared Redis: TCP, TLS for `rediss://` with the proxy's own trust
//! (webpki roots plus `ca_file`, the same crypto provider), then AUTH and SELECT by the client.
//!
//! The stream is made here rather than by the `redis` crate so that TLS is exactly the proxy's
//! and every step is bounded: a Redis that accepts and then says nothing must not hold a login.

use std::{sync::Arc, time::Duration};

use redis::{AsyncConnectionConfig, RedisConnectionInfo, aio::MultiplexedConnection};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;

use crate::config::SharedSettings;

/// Opens a connection and checks it answers PING, all within `within`. The error is a line for
/// the log (it never holds the password).
pub(crate) async fn open(
    settings: &SharedSettings,
    tls: Option<&Arc<ClientConfig>>,
    within: Duration,
) -> Result<MultiplexedConnection, String> {
    tokio::time::timeout(within, open_unbounded(settings, tls))
        .await
        .unwrap_or_else(|_| Err(format!("no connection within {within:?}")))
}

async fn open_unbounded(
    settings: &SharedSettings,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<MultiplexedConnection, String> {
    let tcp = TcpStream::connect((settings.host.as_str(), settings.port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let config = AsyncConnectionConfig::new().set_response_timeout(Some(settings.timeout));
    let info = handshake(settings);
    // The driver task ends with the connection's last handle.
    let mut connection = match tls {
        Some(tls) => {
            let name = ServerName::try_from(settings.host.clone())
                .map_err(|e| format!("{} is not a TLS server name: {e}", settings.host))?;
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS: {e}"))?;
            let (connection, driver) =
                MultiplexedConnection::new_with_config(&info, stream, config)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(driver);
            connection
        }
        None => {
            let (connection, driver) = MultiplexedConnection::new_with_config(&info, tcp, config)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(driver);
            connection
        }
    };
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    if pong != "PONG" {
        return Err("PING was not answered PONG: not a Redis server".to_owned());
    }
    Ok(connection)
}

/// What the client sends after connecting: the database, and AUTH when there is a password.
fn handshake(settings: &SharedSettings) -> RedisConnectionInfo {
    let mut info = RedisConnectionInfo::default().set_db(settings.db);
    if let Some(user) = &settings.username {
        info = info.set_username(user);
    }
    if let Some(password) = &settings.password {
        info = info.set_password(password.expose());
    }
    info
}

/// `INFO server`'s `redis_version` (or Valkey's), for `sfproxy check`.
pub(crate) async fn server_version(connection: &mut MultiplexedConnection) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(connection)
        .await
        .ok()?;
    info.lines().find_map(|line| {
        line.strip_prefix("valkey_version:")
            .map(|v| format!("Valkey {}", v.trim()))
            .or_else(|| {
                line.strip_prefix("redis_version:")
                    .map(|v| format!("Redis {}", v.trim()))
            })
    })
}
