//! Prometheus text exposition, parsed rather than substring-matched: (name, labels) → value.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
};

use super::curl;

pub type Labels = BTreeMap<String, String>;

/// One scrape of `/metrics`: (name, labels) → value.
#[derive(Debug)]
pub struct Scrape(pub HashMap<(String, Labels), f64>);

impl Scrape {
    pub async fn take(admin: SocketAddr) -> Scrape {
        let reply = curl(&[&format!("http://{admin}/metrics")]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(
            reply
                .header("content-type")
                .is_some_and(|ct| ct.starts_with("text/plain")),
            "{:?}",
            reply.headers
        );
        Scrape(parse_exposition(&reply.body))
    }

    /// The sample with exactly these labels; 0 when absent (a counter not yet incremented).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .get(&(name.to_owned(), labels))
            .copied()
            .unwrap_or(0.0)
    }

    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0.contains_key(&(name.to_owned(), labels))
    }
}

/// How much each sample moved between two scrapes.
pub fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

pub fn parse_exposition(text: &str) -> HashMap<(String, Labels), f64> {
    let mut samples = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("sample without a value: {line:?}"),
        };
        let mut labels = Labels::new();
        let rest = if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end = loop {
                // label name
                let mut key = String::new();
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                let mut value = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => match chars.next().map(|(_, c)| c) {
                            Some('n') => value.push('\n'),
                            Some(other) => value.push(other),
                            None => panic!("dangling escape: {line:?}"),
                        },
                        '"' => break,
                        other => value.push(other),
                    }
                }
                labels.insert(key.trim().to_owned(), value);
                match chars.next() {
                    Some((_, ',')) if chars.peek().is_some_and(|(_, c)| *c == '}') => {
                        break chars.next().unwrap().0;
                    }
                    Some((_, ',')) => {}
                    Some((i, '}')) => break i,
                    other => panic!("unexpected {other:?} in {line:?}"),
                }
            };
            &inner[end + 1..]
        } else {
            rest
        };
        let value = rest.split_whitespace().next().expect("value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or_else(|e| panic!("{e}: {line:?}")),
        };
        samples.insert((name.to_owned(), labels), value);
    }
    samples
}
