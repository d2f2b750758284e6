//! The stand-in's data: Salesforce ids (key prefix, 15 characters, the 3-character case
//! checksum), the fixed table every query reads, and just enough SOQL to read a query's field
//! list, object and `LIMIT`.

/// The rows every query of Account returns, in order: Salesforce's own sample accounts.
const ACCOUNTS: [[(&str, &str); 4]; 3] = [
    [
        ("Id", ""),
        ("Name", "Burlington Textiles Corp of America"),
        ("Industry", "Apparel"),
        ("BillingCity", "Burlington"),
    ],
    [
        ("Id", ""),
        ("Name", "Edge Communications"),
        ("Industry", "Electronics"),
        ("BillingCity", "Austin"),
    ],
    [
        ("Id", ""),
        ("Name", "Grand Hotels & Resorts Ltd"),
        ("Industry", "Hospitality"),
        ("BillingCity", "Chicago"),
    ],
];

/// A record: its type and its fields in table order, `Id` first.
pub(crate) struct Row {
    pub(crate) fields: Vec<(&'static str, String)>,
}

impl Row {
    /// The value of `field` (case-insensitive, as SOQL reads names) and its canonical name.
    pub(crate) fn get(&self, field: &str) -> Option<(&'static str, &str)> {
        self.fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(field))
            .map(|(name, value)| (*name, value.as_str()))
    }
}

/// The fixed table of `sobject`: three accounts, or three rows of any other known object.
pub(crate) fn table(sobject: &str, prefix: &str) -> Vec<Row> {
    (0..ACCOUNTS.len())
        .map(|i| {
            let id = id_with_checksum(&format!("{prefix}Mk00000{:05}", i + 1));
            let fields = if sobject.eq_ignore_ascii_case("Account") {
                ACCOUNTS[i]
                    .iter()
                    .map(|(name, value)| {
                        let value = if *name == "Id" {
                            id.clone()
                        } else {
                            (*value).to_owned()
                        };
                        (*name, value)
                    })
                    .collect()
            } else {
                vec![("Id", id), ("Name", format!("{sobject} {}", i + 1))]
            };
            Row { fields }
        })
        .collect()
}

/// Objects the stand-in knows, with their key prefixes (custom objects, `__c`: `a00`).
pub(crate) fn key_prefix(sobject: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 15] = [
        ("Account", "001"),
        ("Contact", "003"),
        ("User", "005"),
        ("Opportunity", "006"),
        ("Lead", "00Q"),
        ("Task", "00T"),
        ("Event", "00U"),
        ("Case", "500"),
        ("Campaign", "701"),
        ("Contract", "800"),
        ("Order", "801"),
        ("Product2", "01t"),
        ("Pricebook2", "01s"),
        ("ApexClass", "01p"),
        ("ApexTrigger", "01q"),
    ];
    if let Some((_, prefix)) = KNOWN.iter().find(|(n, _)| n.eq_ignore_ascii_case(sobject)) {
        return Some(prefix);
    }
    let custom = sobject.len() > 3
        && sobject.ends_with("__c")
        && sobject
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    custom.then_some("a00")
}

/// The canonical spelling of a known object's name (SOQL and describe are case-insensitive).
pub(crate) fn canonical(sobject: &str) -> String {
    const NAMES: [&str; 15] = [
        "Account",
        "Contact",
        "User",
        "Opportunity",
        "Lead",
        "Task",
        "Event",
        "Case",
        "Campaign",
        "Contract",
        "Order",
        "Product2",
        "Pricebook2",
        "ApexClass",
        "ApexTrigger",
    ];
    NAMES
        .iter()
        .find(|n| n.eq_ignore_ascii_case(sobject))
        .map_or_else(|| sobject.to_owned(), |n| (*n).to_owned())
}

/// Appends Salesforce's checksum to a 15-character id: for each 5-character chunk, the bits of
/// its upper-case letters (first character lowest) pick a letter of `A..Z0..5`.
pub(crate) fn id_with_checksum(id15: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
    let mut id = id15.to_owned();
    for chunk in id15.as_bytes().chunks(5) {
        let bits = chunk
            .iter()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_uppercase())
            .fold(0usize, |acc, (i, _)| acc | (1 << i));
        id.push(char::from(ALPHABET[bits & 31]));
    }
    id
}

/// Whether `id` looks like a Salesforce id: 15 or 18 letters and digits.
pub(crate) fn is_id(id: &str) -> bool {
    matches!(id.len(), 15 | 18) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A new id of the given key prefix, unique in this stand-in (`n` from a counter).
pub(crate) fn new_id(prefix: &str, n: u64) -> String {
    id_with_checksum(&format!("{prefix}Mk9{:09}", n % 1_000_000_000))
}

/// What the stand-in reads of a SOQL query.
#[derive(Debug, PartialEq)]
pub(crate) struct Soql {
    pub(crate) fields: Vec<String>,
    pub(crate) sobject: String,
    pub(crate) limit: Option<usize>,
}

/// `SELECT a, b FROM Object [anything] [LIMIT n]`; the reason otherwise, in Salesforce's words
/// where they are simple.
pub(crate) fn parse_soql(query: &str) -> Result<Soql, String> {
    let words: Vec<&str> = query.split_whitespace().collect();
    let Some(first) = words.first() else {
        return Err("unexpected token: <EOF>".into());
    };
    if !first.eq_ignore_ascii_case("select") {
        return Err(format!("unexpected token: '{first}'"));
    }
    let Some(from) = words.iter().position(|w| w.eq_ignore_ascii_case("from")) else {
        return Err("unexpected token: <EOF>".into());
    };
    let fields: Vec<String> = words[1..from]
        .join(" ")
        .split(',')
        .map(|f| f.trim().to_owned())
        .collect();
    if fields.iter().any(String::is_empty) {
        return Err("unexpected token: 'FROM'".into());
    }
    let Some(sobject) = words.get(from + 1) else {
        return Err("unexpected token: <EOF>".into());
    };
    let limit = words
        .iter()
        .position(|w| w.eq_ignore_ascii_case("limit"))
        .map(|at| {
            let value = words.get(at + 1).copied().unwrap_or("<EOF>");
            value
                .parse::<usize>()
                .map_err(|_| format!("unexpected token: '{value}'"))
        })
        .transpose()?;
    Ok(Soql {
        fields,
        sobject: (*sobject).to_owned(),
        limit,
    })
}

/// A field name the stand-in can write as an element: letters, digits, underscores.
pub(crate) fn is_plain_field(field: &str) -> bool {
    field
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && field
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_salesforces() {
        // Real ids from Salesforce's documentation.
        assert_eq!(id_with_checksum("001D000000HRzKC"), "001D000000HRzKCIA1");
        assert_eq!(id_with_checksum("00D000000000001"), "00D000000000001EAA");
        assert_eq!(id_with_checksum("005000000000001"), "005000000000001AAA");
    }

    #[test]
    fn reads_field_list_object_and_limit() {
        assert_eq!(
            parse_soql("SELECT Id, Name FROM Account WHERE Name != null LIMIT 1"),
            Ok(Soql {
                fields: vec!["Id".into(), "Name".into()],
                sobject: "Account".into(),
                limit: Some(1),
            })
        );
        assert!(parse_soql("SELECT FROM Account").is_err());
        assert!(parse_soql("DELETE Account").is_err());
        assert!(parse_soql("select Id from").is_err());
        assert!(parse_soql("select Id from Account limit x").is_err());
        assert_eq!(key_prefix("account"), Some("001"));
        assert_eq!(key_prefix("Invoice__c"), Some("a00"));
        assert_eq!(key_prefix("Nope"), None);
    }
}
