//! `sfproxy keygen`: the key and certificate a connected app needs for the JWT bearer flow, an
//! interception CA (`--ca`), the key sealing the session ids of legacy logins (`--logins-key`),
//! or the key sealing what replicas store in Redis (`--shared-key`).
//!
//! The key is written once, readable by its owner only, and never overwritten without
//! `--force`: replacing it silently would break every session until the new certificate is
//! uploaded to Salesforce.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use crate::pki;

pub(crate) const DEFAULT_DAYS: u32 = 730;

/// The options of `sfproxy keygen` (clap reads them straight into this).
#[derive(clap::Args)]
pub struct Keygen {
    /// Base name of the files: NAME.key and NAME.crt.
    #[arg(long)]
    pub name: String,
    /// Directory for the files.
    #[arg(long, default_value = "certs")]
    pub dir: PathBuf,
    /// Certificate validity in days.
    #[arg(long, default_value_t = DEFAULT_DAYS)]
    pub days: u32,
    /// Certificate subject [default: "CN=sfproxy NAME"]
    #[arg(long)]
    pub subject: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// Make an interception CA for [proxy.intercept] instead of a connected app key.
    #[arg(long)]
    pub ca: bool,
    /// Make the key of [logins] (NAME.key only: 32 random bytes, base64) instead.
    #[arg(long, conflicts_with_all = ["ca", "permit", "subject"])]
    pub logins_key: bool,
    /// Make the key of [shared] (NAME.key only: 32 random bytes, base64) instead.
    #[arg(long, conflicts_with_all = ["ca", "permit", "subject", "logins_key"])]
    pub shared_key: bool,
    /// With --ca: another name suffix the CA may vouch for (repeatable).
    #[arg(long = "permit", value_name = "SUFFIX")]
    pub permit: Vec<String>,
}

/// Writes `<dir>/<name>.key` (PKCS#8, mode 0600) and `<dir>/<name>.crt`; returns what to tell
/// the operator.
pub fn run(args: &Keygen) -> Result<String, String> {
    let valid_name = !args.name.is_empty()
        && args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !args.name.starts_with('.');
    if !valid_name {
        return Err(format!(
            "--name {:?}: use letters, digits, '-', '_' or '.' (it names the files)",
            args.name
        ));
    }
    let key_path = args.dir.join(format!("{}.key", args.name));
    if args.logins_key {
        return symmetric_key(args, &key_path, Symmetric::Logins);
    }
    if args.shared_key {
        return symmetric_key(args, &key_path, Symmetric::Shared);
    }
    let cert_path = args.dir.join(format!("{}.crt", args.name));
    if !args.force {
        for path in [&key_path, &cert_path] {
            if path.exists() {
                return Err(format!(
                    "{} exists; pass --force to replace it (the connected app then needs the new \
                     certificate)",
                    path.display()
                ));
            }
        }
    }
    if !args.ca && !args.permit.is_empty() {
        return Err("--permit applies to an interception CA: add --ca".to_owned());
    }
    let subject = args.subject.clone().unwrap_or_else(|| {
        if args.ca {
            format!("CN=sfproxy interception CA {}", args.name)
        } else {
            format!("CN=sfproxy {}", args.name)
        }
    });
    let pair = if args.ca {
        crate::intercept::ca::generate(&subject, args.days, &args.permit)
    } else {
        pki::connected_app_cert(&subject, args.days)
    }
    .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    write_private(&key_path, &pair.key_pem)
        .map_err(|e| format!("cannot write {}: {e}", key_path.display()))?;
    std::fs::write(&cert_path, &pair.cert_pem)
        .map_err(|e| format!("cannot write {}: {e}", cert_path.display()))?;
    if args.ca {
        let mut permitted: Vec<&str> = crate::intercept::ca::PERMITTED.to_vec();
        permitted.extend(args.permit.iter().map(String::as_str));
        return Ok(format!(
            "wrote {key} (interception CA private key, ECDSA P-256, mode 0600: whoever holds it \
             can impersonate the permitted names to every caller that trusts the CA)\n\
             wrote {cert} (CA certificate, {subject}, valid {days} days, permits only: {permits}; \
             no IP addresses)\n\n\
             Next:\n  \
             1. In sfproxy.toml:\n       [proxy.intercept]\n       ca_cert_file = \"{cert}\"\n       \
             ca_key_file = \"{key}\"\n  \
             2. Make the callers trust {cert} (curl --cacert, a Java trust store via keytool, \
             REQUESTS_CA_BUNDLE for Python, the machine store for .NET), then point their \
             HTTPS_PROXY at sfproxy.\n",
            key = key_path.display(),
            cert = cert_path.display(),
            days = args.days,
            permits = permitted.join(", "),
        ));
    }
    Ok(format!(
        "wrote {key} (private key, PKCS#8, mode 0600: keep it secret, never commit it)\n\
         wrote {cert} (self-signed certificate, {subject}, valid {days} days)\n\n\
         Next, in Salesforce Setup:\n  \
         1. App Manager > New Connected App: enable OAuth Settings, any callback URL, and the \
         scope \"Manage user data via APIs (api)\".\n  \
         2. Tick \"Use digital signatures\" and upload {cert}.\n  \
         3. Save, then copy the Consumer Key: it is client_id in [orgs.{name}].\n  \
         4. Manage > Edit Policies: Permitted Users = \"Admin approved users are pre-authorized\"; \
         then add the integration user's profile or permission set to the app.\n  \
         5. In sfproxy.toml:\n       [orgs.{name}]\n       login_url = \"https://login.salesforce.com\"   \
         # https://test.salesforce.com for a sandbox\n       client_id = \"<Consumer Key>\"\n       \
         private_key_file = \"{key}\"\n  \
         6. sfproxy check --config sfproxy.toml   # logs in as each route's user and calls the API\n",
        key = key_path.display(),
        cert = cert_path.display(),
        days = args.days,
        name = args.name,
    ))
}

/// The 32-byte keys `keygen` writes besides connected app keys.
#[derive(Clone, Copy)]
enum Symmetric {
    Logins,
    Shared,
}

/// Writes `<dir>/<name>.key`: the base64 of 32 random bytes and a newline, mode 0600.
fn symmetric_key(args: &Keygen, path: &Path, kind: Symmetric) -> Result<String, String> {
    use base64::Engine;
    if !args.force && path.exists() {
        let then = match kind {
            Symmetric::Logins => {
                "session ids handed out under the old key are then refused, and their callers \
                 log in again"
            }
            Symmetric::Shared => {
                "what replicas stored under the old key is then passed over, and the next miss \
                 logs in again"
            }
        };
        return Err(format!(
            "{} exists; pass --force to replace it ({then})",
            path.display()
        ));
    }
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| "the system random number generator failed".to_owned())?;
    let text = format!(
        "{}\n",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    write_private(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let key = path.display();
    Ok(match kind {
        Symmetric::Logins => format!(
            "wrote {key} (logins key, 32 random bytes in base64, mode 0600: whoever holds it can \
             make session ids sfproxy accepts; give every replica the same file, never commit it)\n\n\
             Next, in sfproxy.toml (a relative path is read from the config file's directory):\n  \
             [logins]\n  key_file = \"{key}\"\n\
             then `sfproxy check` names it on its legacy logins line.\n"
        ),
        Symmetric::Shared => format!(
            "wrote {key} (shared key, 32 random bytes in base64, mode 0600: it seals every token \
             replicas store in Redis; give every replica the same file, never commit it)\n\n\
             Next, in sfproxy.toml (a relative path is read from the config file's directory):\n  \
             [shared]\n  redis_url = \"redis://sessions.internal:6379/0\"\n  \
             key_file = \"{key}\"\n\
             then `sfproxy check` connects to Redis and says what answered.\n"
        ),
    })
}

/// Creates (or truncates) a file only its owner may read.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // An existing file keeps its mode on open: tighten it before writing the key.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(contents.as_bytes())
    }
    #[cfg(not(unix))]
    {
        options.open(path)?.write_all(contents.as_bytes())
    }
}
