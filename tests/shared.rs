//! Several replicas on one real `redis-server`: one login for the fleet on a cold start and on an
//! expiry, the hourly budget counted for the fleet, no request lost when Redis dies, sharing
//! again when it is back, and nothing in Redis that reveals a token or names a user.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns fail the test

mod support;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sfproxy::mock_org::TokenFailure;
use support::{Org, Proxy, USER, redis::Redis, route, run_sfproxy, scrape::Scrape};

const HOST: &str = "acme.my.salesforce.com";
const LIMITS: &str = "/services/data/v61.0/limits";

/// A shared key written by `sfproxy keygen --shared-key`, as an operator makes one.
fn shared_key(org: &Org) -> PathBuf {
    let out = run_sfproxy(
        &["keygen", "--shared-key", "--name", "shared", "--dir", "."],
        org.dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    org.dir.path().join("shared.key")
}

fn replica_config(org: &Org, redis: &Redis, org_extra: &str) -> String {
    let key = org.dir.path().join("shared.key");
    if !key.exists() {
        shared_key(org);
    }
    org.config("workers = 2\nadmin_listen = \"127.0.0.1:0\"", org_extra)
        + &format!(
            "\n[shared]\nredis_url = \"{}\"\nkey_file = \"{}\"\n",
            redis.url(),
            key.display()
        )
        + &route("erp", &[HOST], USER, "")
}

/// Three replicas of one config.
fn fleet(config: &str) -> Vec<Proxy> {
    (0..3).map(|_| Proxy::start(config)).collect()
}

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Empty<bytes::Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `total` GETs spread round-robin over `proxies`, all at once; the statuses.
async fn burst(proxies: &[Proxy], total: usize) -> Vec<u16> {
    let client = client();
    let tasks: Vec<_> = (0..total)
        .map(|i| {
            let client = client.clone();
            let uri: http::Uri = format!("http://{}{LIMITS}", proxies[i % proxies.len()].addr)
                .parse()
                .unwrap();
            let request = http::Request::get(uri)
                .header("host", HOST)
                .body(Empty::new())
                .unwrap();
            tokio::spawn(async move {
                let response = client.request(request).await.expect("proxy answers");
                let status = response.status().as_u16();
                response.into_body().collect().await.expect("body");
                status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

/// Every key and value in Redis: no token the stand-in issued, no user or org name in a key.
async fn assert_nothing_revealing(redis: &Redis, org: &Org) {
    let stored = redis.dump().await;
    assert!(
        !stored.is_empty(),
        "the fleet stored nothing: nothing was proved"
    );
    let tokens = org.mock.issued_sessions();
    assert!(!tokens.is_empty());
    for (key, value) in &stored {
        for secret in tokens.iter().map(String::as_bytes).chain([&b"00D"[..]]) {
            let found = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret);
            assert!(!found(key) && !found(value), "a token in Redis");
        }
        let key = String::from_utf8_lossy(key);
        for name in [USER, "erp", "acme"] {
            assert!(!key.contains(name), "{key} names {name}");
        }
        assert!(key.starts_with("sfproxy:{"), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_cold_callers_over_three_replicas_cost_one_token_request() {
    let redis = Redis::start();
    let org = Org::start().await;
    let proxies = fleet(&replica_config(&org, &redis, ""));
    // A slow login: every caller on every replica arrives while it is in flight.
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_millis(500)));
    let statuses = burst(&proxies, 1000).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(org.mock.token_requests(), 1, "one login for the fleet");
    assert_eq!(org.mock.requests().len(), 1000);
    assert!(org.mock.requests().iter().all(|r| r.session_valid));
    let mut sources = Vec::new();
    for proxy in &proxies {
        proxy.wait_for_events("request", 1000 / 3).await;
        proxy.settle().await;
        sources.extend(
            proxy
                .events("request")
                .iter()
                .map(|e| e["session"].as_str().unwrap_or_default().to_owned()),
        );
    }
    assert_eq!(sources.iter().filter(|s| *s == "minted").count(), 1);
    assert_eq!(
        sources.iter().filter(|s| *s == "shared").count(),
        2,
        "each other replica took the session from Redis once"
    );
    assert_nothing_revealing(&redis, &org).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiry_seen_by_three_hundred_callers_over_three_replicas_costs_one_login() {
    let redis = Redis::start();
    let org = Org::start().await;
    let proxies = fleet(&replica_config(&org, &redis, ""));
    assert!(burst(&proxies, 3).await.iter().all(|s| *s == 200));
    assert_eq!(org.mock.token_requests(), 1);

    org.mock.expire_sessions();
    org.mock
        .fail_next_token_requests(1, TokenFailure::Delay(Duration::from_millis(300)));
    let statuses = burst(&proxies, 300).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(org.mock.token_requests(), 2, "one new login for the fleet");
    let seen = org.mock.requests();
    let (valid, refused) = seen.iter().skip(3).fold((0, 0), |(v, r), req| {
        if req.session_valid {
            (v + 1, r)
        } else {
            (v, r + 1)
        }
    });
    assert_eq!(
        valid, 300,
        "every caller answered with the new session once"
    );
    assert!(
        refused <= 300,
        "no caller replayed twice: {refused} refused sends"
    );
    assert!(refused > 0, "the expired session was tried");
    for proxy in &proxies {
        proxy.settle().await;
        let replayed = proxy
            .events("request")
            .iter()
            .filter(|e| e["session"] == "replayed")
            .count();
        assert!(replayed > 0, "each replica replayed its callers");
    }
    assert_nothing_revealing(&redis, &org).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hourly_budget_is_counted_for_the_fleet() {
    let redis = Redis::start();
    let org = Org::start().await;
    // Sessions that age out every second, and Salesforce expiring them besides: every replica
    // keeps needing logins.
    let config = replica_config(
        &org,
        &redis,
        "max_logins_per_hour = 3\nsession_ttl = \"1s\"\nrejected_backoff = \"0s\"",
    );
    let proxies = fleet(&config);
    let mut statuses = Vec::new();
    for round in 0..8 {
        if round % 2 == 1 {
            org.mock.expire_sessions();
        }
        statuses.extend(burst(&proxies, 6).await);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert!(
        org.mock.token_requests() <= 3,
        "{} token requests for a fleet budget of 3",
        org.mock.token_requests()
    );
    assert!(statuses.contains(&200));
    assert!(
        statuses.contains(&503),
        "past the budget, callers are told: {statuses:?}"
    );
    let spent: usize = proxies
        .iter()
        .map(|p| p.events("login budget spent: no token request").len())
        .sum();
    assert!(spent > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_login_is_remembered_for_the_fleet() {
    let redis = Redis::start();
    let org = Org::start().await;
    let proxies = fleet(&replica_config(&org, &redis, "rejected_backoff = \"30s\""));
    org.mock.fail_next_token_requests(
        1,
        TokenFailure::OAuth {
            status: 400,
            error: "invalid_grant".into(),
            description: "user hasn't approved this consumer".into(),
        },
    );
    let client = client();
    for round in 0..3 {
        for proxy in &proxies {
            let uri: http::Uri = format!("http://{}{LIMITS}", proxy.addr).parse().unwrap();
            let request = http::Request::get(uri)
                .header("host", HOST)
                .body(Empty::new())
                .unwrap();
            let response = client.request(request).await.unwrap();
            assert!(response.status().is_server_error(), "round {round}");
            let body = response.into_body().collect().await.unwrap().to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body[0]["errorCode"], "PROXY_LOGIN_REJECTED");
            assert!(
                body[0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("hasn't approved"),
                "every replica answers with the refusal: {body}"
            );
        }
    }
    assert_eq!(
        org.mock.token_requests(),
        1,
        "one refused token request for the fleet, remembered by all for rejected_backoff"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_redis_mid_load_loses_no_request_and_sharing_resumes() {
    let mut redis = Redis::start();
    let org = Org::start().await;
    let proxies = Arc::new(fleet(&replica_config(&org, &redis, "")));
    assert!(burst(&proxies, 3).await.iter().all(|s| *s == 200));
    assert_eq!(org.mock.token_requests(), 1);

    // About 300 requests a second for 10 s, over kept-alive connections to the three.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..15)
        .map(|worker| {
            let (proxies, stop, client) = (proxies.clone(), stop.clone(), client());
            tokio::spawn(async move {
                let uri: http::Uri = format!("http://{}{LIMITS}", proxies[worker % 3].addr)
                    .parse()
                    .unwrap();
                let mut statuses = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let request = http::Request::get(uri.clone())
                        .header("host", HOST)
                        .body(Empty::new())
                        .unwrap();
                    let status = match client.request(request).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.into_body().collect().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    statuses.push(status);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                statuses
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.kill();
    for proxy in proxies.iter() {
        proxy
            .wait_for_events(
                "shared tier unavailable: this process carries on with its own sessions, \
                 logins, failure memory and budget",
                1,
            )
            .await;
    }
    let admin = proxies[0].admin().await;
    let during = Scrape::take(admin).await;
    assert_eq!(during.get("sfproxy_shared_tier_up", &[]), 0.0);
    let ready = support::curl(&[&format!("http://{admin}/readyz")]).await;
    assert_eq!(
        ready.status, 200,
        "still ready without Redis: {}",
        ready.body
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.unwrap());
    }
    assert!(statuses.len() > 1500, "{} requests sent", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "lost or failed: {:?}",
        statuses.iter().filter(|s| **s != 200).count()
    );
    assert!(
        org.mock.token_requests() <= 1 + 3,
        "at most one login per replica while alone"
    );
    let back = "shared tier back: sessions, logins and the budget are shared again";
    for proxy in proxies.iter() {
        proxy.wait_for_events(back, 1).await;
        proxy.settle().await;
        assert_eq!(
            proxy
                .events(
                    "shared tier unavailable: this process carries on with its own sessions, \
                     logins, failure memory and budget"
                )
                .len(),
            1,
            "the change is logged once"
        );
    }
    let after = Scrape::take(proxies[0].admin().await).await;
    assert_eq!(after.get("sfproxy_shared_tier_up", &[]), 1.0);

    // Shared again: a session one replica mints after an expiry is the others' without a login.
    let before = org.mock.token_requests();
    org.mock.expire_sessions();
    let first = burst(&proxies[..1], 1).await;
    assert_eq!(first, [200]);
    assert_eq!(org.mock.token_requests(), before + 1);
    let others = burst(&proxies[1..], 2).await;
    assert_eq!(others, [200, 200]);
    assert_eq!(
        org.mock.token_requests(),
        before + 1,
        "the other replicas used the session from Redis"
    );
    assert_nothing_revealing(&redis, &org).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_keeps_the_connection_and_a_changed_table_reconnects() {
    let redis = Redis::start();
    let org = Org::start().await;
    let config = replica_config(&org, &redis, "");
    let proxy = Proxy::start(&config);
    assert_eq!(burst(std::slice::from_ref(&proxy), 1).await, [200]);
    proxy.signal("HUP").await;
    proxy.wait_for_events("config reloaded", 1).await;
    assert!(proxy.events("[shared] changed: connecting anew").is_empty());

    proxy.rewrite_config(&config.replace("[shared]\n", "[shared]\nprefix = \"other:\"\n"));
    proxy.signal("HUP").await;
    proxy.wait_for_events("config reloaded", 2).await;
    proxy
        .wait_for_events("[shared] changed: connecting anew", 1)
        .await;
    proxy.wait_for_events("shared tier connected", 2).await;
    // A new (org, user) key space: the next miss logs in and stores under the new prefix.
    org.mock.expire_sessions();
    assert_eq!(burst(std::slice::from_ref(&proxy), 1).await, [200]);
    let keys: Vec<String> = redis
        .dump()
        .await
        .into_iter()
        .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
        .collect();
    assert!(keys.iter().any(|k| k.starts_with("other:{")), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_says_what_answered_at_the_redis_url() {
    let redis = Redis::start();
    let org = Org::start().await;
    let config = replica_config(&org, &redis, "");
    let path = org.dir.path().join("sfproxy.toml");
    std::fs::write(&path, &config).unwrap();
    let out = run_sfproxy(
        &["check", "--config", path.to_str().unwrap()],
        org.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("shared tier: {} OK (Redis 7.", redis.url())),
        "{stdout}"
    );

    let closed = config.replace(
        &redis.url(),
        &format!("redis://127.0.0.1:{}/0", support::closed_port()),
    );
    std::fs::write(&path, closed).unwrap();
    let started = Instant::now();
    let out = run_sfproxy(
        &["check", "--config", path.to_str().unwrap()],
        org.dir.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("FAILED: cannot connect"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The config shipped for Kubernetes loads as it is, once its key paths hold keys.
#[tokio::test]
async fn the_kubernetes_config_is_one_sfproxy_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    for (args, sub) in [
        (vec!["keygen", "--name", "acme"], "orgs"),
        (vec!["keygen", "--shared-key", "--name", "shared"], "shared"),
    ] {
        let mut args = args;
        let target = keys.join(sub);
        args.extend(["--dir", target.to_str().unwrap()]);
        let out = run_sfproxy(&args, dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/sfproxy.toml"),
    )
    .unwrap();
    assert!(shipped.contains("/etc/sfproxy-keys/"));
    let path = dir.path().join("sfproxy.toml");
    let here = format!("{}/", keys.display());
    std::fs::write(&path, shipped.replace("/etc/sfproxy-keys/", &here)).unwrap();
    let config = sfproxy::config::Config::load(&path);
    assert!(config.is_ok(), "{}", config.unwrap_err());
}

/// Values that do not open, and a key of the wrong type: still answered, with one login each time.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_in_redis_costs_a_login_never_a_request() {
    let redis = Redis::start();
    let org = Org::start().await;
    let config = replica_config(&org, &redis, "");
    let first = Proxy::start(&config);
    assert_eq!(burst(std::slice::from_ref(&first), 1).await, [200]);
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let session: String = redis::cmd("KEYS")
        .arg("sfproxy:*:session")
        .query_async::<Vec<String>>(&mut c)
        .await
        .unwrap()
        .remove(0);
    let failure = session.replace(":session", ":failure");
    for key in [&session, &failure] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("garbage")
            .query_async(&mut c)
            .await
            .unwrap();
    }
    // A cold replica passes both over, takes the lock and logs in.
    let second = Proxy::start(&config);
    let started = Instant::now();
    assert_eq!(burst(std::slice::from_ref(&second), 1).await, [200]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no wait for a login nobody makes"
    );
    assert_eq!(org.mock.token_requests(), 2);
    second.settle().await;
    assert_eq!(
        second
            .events("a session stored in the shared tier does not open with this replica's key and settings: passed over, and replaced by the next login")
            .len(),
        1
    );

    // The wrong type: the tier is down for that replica, which carries on alone.
    let _: () = redis::cmd("DEL")
        .arg(&session)
        .query_async(&mut c)
        .await
        .unwrap();
    let _: () = redis::cmd("LPUSH")
        .arg(&session)
        .arg("x")
        .query_async(&mut c)
        .await
        .unwrap();
    let third = Proxy::start(&config);
    assert_eq!(burst(std::slice::from_ref(&third), 1).await, [200]);
    assert_eq!(org.mock.token_requests(), 3);
    third
        .wait_for_events(
            "shared tier unavailable: this process carries on with its own sessions, \
             logins, failure memory and budget",
            1,
        )
        .await;
}
