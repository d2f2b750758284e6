//! `sfproxy demo`: the whole product on one machine, nothing to set up.
//!
//! Generates what an operator would make by hand — the connected app's key and certificate, and
//! a CA for the stand-in org's TLS — starts the Salesforce stand-in on loopback, writes a real
//! config file next to them, and runs the proxy on it exactly as `sfproxy run` would. The config
//! is printed so a newcomer can read what a working setup looks like.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use crate::{
    app::{self, App},
    mock_org::{MockOrg, MockOrgConfig, MockUser},
    pki, server,
};

pub(crate) const CONSUMER_KEY: &str = "3MVG9demo.consumer.key";
pub(crate) const USER: &str = "integration@demo.example";
/// A real org expects this audience whatever host the token is posted to; so does the stand-in.
pub(crate) const AUDIENCE: &str = "https://login.salesforce.com";

/// The demo's files: key, certificate, CA, config.
fn workdir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("sfproxy-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The secret of the demo's legacy client: the password its logins send.
pub(crate) const LEGACY_SECRET: &str = "demo-secret";

/// The config the demo runs on, for a stand-in org at `org_url`.
pub(crate) fn config_text(listen: SocketAddr, org_url: &str) -> String {
    let legacy_sha256: String =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, LEGACY_SECRET.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    format!(
        r#"# Written by `sfproxy demo`: a working config for a stand-in org on this machine.
[proxy]
listen = "{listen}"
admin_listen = "127.0.0.1:0"    # /healthz, /readyz, /metrics on a free port
ca_file = "ca.crt"              # the stand-in's TLS is signed by this throwaway CA

[orgs.demo]
login_url = "{org_url}"
audience = "{AUDIENCE}"
client_id = "{CONSUMER_KEY}"
private_key_file = "demo.key"

# Callers on this machine, by address.
[clients.local]
networks = ["127.0.0.0/8", "::1/128"]

# A legacy integration: it logs in with username and password; the password is this secret
# ("{LEGACY_SECRET}").
[clients.legacy]
secret_sha256 = "{legacy_sha256}"

# Legacy logins (SOAP login(), the password grant) answered by sfproxy: docs/logins.md.
[logins]

# Forward proxy: curl -x http://{listen} http://demo.my.salesforce.com/...
[[routes]]
name = "demo-forward"
hosts = ["demo.my.salesforce.com"]
org = "demo"
user = "{USER}"

# Gateway: curl http://{listen}/demo/services/...
[[routes]]
name = "demo-gateway"
hosts = ["127.0.0.1", "localhost"]
path_prefix = "/demo/"
strip_prefix = true
org = "demo"
user = "{USER}"

# Legacy logins: POST http://login.salesforce.com/services/oauth2/token through the proxy.
[[routes]]
name = "demo-logins"
hosts = ["login.salesforce.com"]
org = "demo"
user = "{USER}"
clients = ["legacy"]
logins = true
"#
    )
}

/// Generates the connected app's key and certificate and a CA for TLS into `dir`, then starts
/// the stand-in org on `listen` with a certificate for `names`.
async fn start_stand_in(listen: SocketAddr, dir: &Path, names: &[&str]) -> Result<MockOrg, String> {
    let app = pki::connected_app_cert("sfproxy demo", 30).map_err(|e| e.to_string())?;
    let (ca, tls) = pki::tls_ca_and_server(names).map_err(|e| e.to_string())?;
    let written = crate::keygen::write_private(&dir.join("demo.key"), &app.key_pem)
        .and_then(|()| std::fs::write(dir.join("demo.crt"), &app.cert_pem))
        .and_then(|()| std::fs::write(dir.join("ca.crt"), &ca.cert_pem));
    written.map_err(|e| format!("cannot write to {}: {e}", dir.display()))?;
    MockOrg::start(MockOrgConfig {
        consumer_key: CONSUMER_KEY.to_owned(),
        certificate_pem: app.cert_pem,
        users: vec![MockUser {
            username: USER.to_owned(),
            approved: true,
            rest_api: true,
        }],
        audience: AUDIENCE.to_owned(),
        tls,
        listen,
    })
    .await
    .map_err(|e| format!("cannot start the Salesforce stand-in on {listen}: {e}"))
}

/// `sfproxy demo`: the stand-in on a free loopback port and the proxy in front of it.
pub async fn run(listen: SocketAddr) -> Result<(), String> {
    let dir = workdir().map_err(|e| format!("cannot create a work directory: {e}"))?;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut org = start_stand_in(loopback, &dir, &["localhost", "127.0.0.1"]).await?;
    let config_path = dir.join("sfproxy.toml");
    std::fs::write(&config_path, config_text(listen, &org.url()))
        .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    let app = App::load(&config_path)?;
    let url = org.url();
    let outcome = app::run(app, |bound| {
        let listen = bound.proxy;
        let admin = bound
            .admin
            .map_or_else(|| "off".to_owned(), |a| format!("http://{a}"));
        println!(
            "sfproxy demo: a Salesforce stand-in runs at {url} (token endpoint, REST and SOAP APIs),\n\
             and sfproxy listens on http://{listen} in front of it (admin: {admin}).\n\
             Config, key and certificates: {dir}\n\n\
             Try, in another terminal:\n\n  \
             curl -x http://{listen} http://demo.my.salesforce.com/services/data/v61.0/limits\n  \
             http_proxy=http://{listen} curl 'http://demo.my.salesforce.com/services/data/v61.0/query?q=SELECT+Id+FROM+Account'\n  \
             curl http://{listen}/demo/services/data/v61.0/limits          # gateway form\n  \
             curl -x http://{listen} http://evil.example/                   # refused: no route\n  \
             curl -x http://{listen} http://demo.my.salesforce.com/services/Soap/u/61.0 \\\n    \
             -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: \"\"' --data-binary \\\n    \
             '<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:urn=\"urn:partner.soap.sforce.com\"><soapenv:Body><urn:getUserInfo/></soapenv:Body></soapenv:Envelope>'\n  \
             curl -x http://{listen} http://login.salesforce.com/services/oauth2/token \\\n    \
             -d grant_type=password -d username={USER} -d password={LEGACY_SECRET}  # a legacy login, answered by sfproxy\n  \
             curl -x http://{listen} -H 'Authorization: Bearer <its access_token>' \\\n    \
             http://login.salesforce.com/services/data/v61.0/limits       # with the session id it handed out\n  \
             curl {admin}/metrics                                          # Prometheus metrics\n\n\
             Ctrl-C stops it.",
            dir = dir.display(),
        );
    })
    .await;
    org.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

/// `sfproxy stand-in`: only the Salesforce stand-in, for a proxy run elsewhere (docker-compose).
/// Its files land in `dir`; token responses name `public_url` as the instance.
pub async fn stand_in(
    listen: SocketAddr,
    dir: &Path,
    names: &[String],
    public_url: Option<String>,
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut org = start_stand_in(listen, dir, &names).await?;
    let port = org.addr().port();
    let public_url = public_url.unwrap_or_else(|| {
        format!(
            "https://{}:{port}",
            names.first().copied().unwrap_or("localhost")
        )
    });
    org.set_instance_url(Some(public_url.clone()));
    println!(
        "sfproxy stand-in: a Salesforce stand-in listens on {addr}, announced as {public_url}.\n\
         Connected app: consumer key {CONSUMER_KEY}, user {USER}, audience {AUDIENCE}.\n\
         Key, certificate and CA: {dir}/demo.key, demo.crt, ca.crt\n\
         Ctrl-C stops it.",
        addr = org.addr(),
        dir = dir.display(),
    );
    tracing::info!(listen = %org.addr(), public_url, "sfproxy stand-in ready");
    server::stop_signal()
        .map_err(|e| format!("cannot handle signals: {e}"))?
        .await;
    org.shutdown().await;
    Ok(())
}
