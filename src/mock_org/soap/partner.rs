//! Partner API operations (Enterprise and Tooling answer the same, records typed by
//! `xsi:type="sf:{Object}"` instead of the Partner's `sf:sObject` with its `sf:type`).

use super::answers::{Fault, element, fault, ok};
use super::call::{Api, Call};
use super::envelope::{Element, XSI_NS, escape};
use super::records::{self, Row};
use crate::mock_org::state::{MockResponse, SoapCursor};
use crate::mock_org::token::{ORG_ID, user_id};

/// Salesforce's default `QueryOptions` batch size.
const DEFAULT_BATCH: usize = 500;
/// Cursors kept for `queryMore`; the oldest are forgotten past this (Salesforce keeps 10 per user).
const MAX_CURSORS: usize = 1000;
const SESSION_SECONDS: u32 = 7200;

pub(super) fn answer(call: &Call<'_>) -> MockResponse {
    let result = match call.operation.local.as_str() {
        "getUserInfo" => Ok(get_user_info(call)),
        "query" | "queryAll" => query(call),
        "queryMore" => query_more(call),
        "create" => create(call),
        "update" => update(call),
        "delete" => delete(call),
        "describeSObject" => describe(call),
        _ => Ok(echo(call)),
    };
    match result {
        Ok(body) => ok(call.api, call.usage, &body),
        Err(error) => fault(call.api, &error),
    }
}

/// `<echoResponse><result>` with the envelope as received, as text.
pub(super) fn echo(call: &Call<'_>) -> String {
    format!(
        "<echoResponse><result>{}</result></echoResponse>",
        escape(&String::from_utf8_lossy(call.envelope))
    )
}

/// The profile every stand-in user has.
fn profile_id() -> String {
    records::id_with_checksum("00eMk0000000001")
}

fn get_user_info(call: &Call<'_>) -> String {
    let username = call.username;
    let local = username.split('@').next().unwrap_or(username);
    let user_id = user_id(call.user);
    let profile_id = profile_id();
    let seconds = SESSION_SECONDS.to_string();
    let fields: [(&str, Option<&str>); 24] = [
        ("accessibilityMode", Some("false")),
        ("chatterExternal", Some("false")),
        ("currencySymbol", Some("$")),
        ("orgAttachmentFileSizeLimit", Some("5242880")),
        ("orgDefaultCurrencyIsoCode", Some("USD")),
        ("orgDefaultCurrencyLocale", Some("en_US")),
        ("orgDisallowHtmlAttachments", Some("false")),
        ("orgHasPersonAccounts", Some("false")),
        ("organizationId", Some(ORG_ID)),
        ("organizationMultiCurrency", Some("false")),
        ("organizationName", Some("sfproxy stand-in org")),
        ("profileId", Some(&profile_id)),
        ("roleId", None),
        ("sessionSecondsValid", Some(&seconds)),
        ("userDefaultCurrencyIsoCode", None),
        ("userEmail", Some(username)),
        ("userFullName", Some(local)),
        ("userId", Some(&user_id)),
        ("userLanguage", Some("en_US")),
        ("userLocale", Some("en_US")),
        ("userName", Some(username)),
        ("userTimeZone", Some("America/Los_Angeles")),
        ("userType", Some("Standard")),
        ("userUiSkin", Some("Theme3")),
    ];
    let result: String = fields.iter().map(|(n, v)| element(n, *v)).collect();
    format!("<getUserInfoResponse><result>{result}</result></getUserInfoResponse>")
}

fn query(call: &Call<'_>) -> Result<String, Fault> {
    let query = call.operation.child_text("queryString").unwrap_or("");
    let soql = records::parse_soql(query)
        .map_err(|m| Fault::new("MALFORMED_QUERY", m).kind("MalformedQueryFault"))?;
    let prefix = records::key_prefix(&soql.sobject).ok_or_else(|| invalid_type(&soql.sobject))?;
    if let Some(field) = soql.fields.iter().find(|f| !records::is_plain_field(f)) {
        let message = format!("the stand-in reads plain field names only, not '{field}'");
        return Err(Fault::new("INVALID_FIELD", message).kind("InvalidFieldFault"));
    }
    let sobject = records::canonical(&soql.sobject);
    let records: Vec<String> = records::table(&sobject, prefix)
        .iter()
        .take(soql.limit.unwrap_or(usize::MAX))
        .map(|row| record(call.api, &sobject, &soql.fields, row))
        .collect();
    let batch = batch_size(call);
    let response = format!("{}Response", call.operation.local);
    if records.len() <= batch {
        return Ok(page(&response, &records, None, records.len()));
    }
    let mut inner = call.state.inner();
    inner.soap_ids += 1;
    let cursor = records::new_id("01g", inner.soap_ids);
    if inner.soap_cursors.len() >= MAX_CURSORS {
        inner.soap_cursors.clear();
    }
    let body = page(
        &response,
        &records[..batch],
        Some(format!("{cursor}-{batch}")),
        records.len(),
    );
    inner.soap_cursors.insert(cursor, SoapCursor { records });
    Ok(body)
}

fn query_more(call: &Call<'_>) -> Result<String, Fault> {
    let locator = call
        .operation
        .child_text("queryLocator")
        .unwrap_or("")
        .trim();
    let invalid = || {
        Fault::new("INVALID_QUERY_LOCATOR", "invalid query locator")
            .kind("InvalidQueryLocatorFault")
    };
    let (cursor, offset) = locator.split_once('-').ok_or_else(invalid)?;
    let offset: usize = offset.parse().map_err(|_| invalid())?;
    let batch = batch_size(call);
    let inner = call.state.inner();
    let records = &inner.soap_cursors.get(cursor).ok_or_else(invalid)?.records;
    if offset >= records.len() {
        return Err(invalid());
    }
    let end = offset.saturating_add(batch).min(records.len());
    let next = (end < records.len()).then(|| format!("{cursor}-{end}"));
    Ok(page(
        "queryMoreResponse",
        &records[offset..end],
        next,
        records.len(),
    ))
}

/// A `QueryResult`: `size` is the whole result's, however many records this page holds.
fn page(response: &str, records: &[String], locator: Option<String>, size: usize) -> String {
    format!(
        "<{response}><result xsi:type=\"QueryResult\"><done>{}</done>{}{}<size>{size}</size>\
         </result></{response}>",
        locator.is_none(),
        element("queryLocator", locator.as_deref()),
        records.concat(),
    )
}

/// `QueryOptions/batchSize` when set (any positive number: Salesforce's minimum of 200 is not
/// enforced, so three rows can page), else Salesforce's default.
fn batch_size(call: &Call<'_>) -> usize {
    call.soap_header("QueryOptions")
        .and_then(|options| options.child_text("batchSize"))
        .and_then(|size| size.trim().parse().ok())
        .filter(|size| *size > 0)
        .unwrap_or(DEFAULT_BATCH)
}

/// One `<records>`: Partner writes `sf:type`, then `sf:Id` (nil when not queried), then the
/// queried fields in query order (so a queried Id comes twice, as Salesforce writes it).
fn record(api: &Api, sobject: &str, fields: &[String], row: &Row) -> String {
    let mut xml = String::new();
    let field = |xml: &mut String, name: &str, value: Option<&str>| {
        xml.push_str(&element(&format!("sf:{name}"), value));
    };
    if matches!(api, Api::Partner) {
        xml.push_str(&format!(
            "<records xsi:type=\"sf:sObject\"><sf:type>{sobject}</sf:type>"
        ));
        let queried_id = fields.iter().any(|f| f.eq_ignore_ascii_case("Id"));
        field(
            &mut xml,
            "Id",
            queried_id.then(|| row.get("Id").map_or("", |(_, v)| v)),
        );
    } else {
        xml.push_str(&format!("<records xsi:type=\"sf:{sobject}\">"));
    }
    for name in fields {
        match row.get(name) {
            Some((canonical, value)) => field(&mut xml, canonical, Some(value)),
            None => field(&mut xml, name, None),
        }
    }
    xml.push_str("</records>");
    xml
}

fn invalid_type(sobject: &str) -> Fault {
    let message = format!(
        "sObject type '{sobject}' is not supported. If you are attempting to use a custom \
         object, be sure to append the '__c' after the entity name. Please reference your WSDL \
         or the describe call for the appropriate names."
    );
    Fault::new("INVALID_TYPE", message).kind("InvalidSObjectFault")
}

/// An sObject's type: its `type` element (Partner) or its `xsi:type` (Enterprise, Tooling).
fn sobject_type(sobject: &Element) -> Result<(String, &'static str), Fault> {
    let named = sobject
        .child_text("type")
        .map(str::trim)
        .or_else(|| {
            sobject
                .attr(Some(XSI_NS), "type")
                .map(|t| t.rsplit(':').next().unwrap_or(t).trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Fault::new("INVALID_TYPE", "Must send a concrete entity type.")
                .kind("InvalidSObjectFault")
        })?;
    let prefix = records::key_prefix(named).ok_or_else(|| invalid_type(named))?;
    Ok((records::canonical(named), prefix))
}

/// A `SaveResult` / `DeleteResult`: the id and success, or the error and a nil id.
fn save_result(outcome: Result<String, (&str, String)>) -> String {
    match outcome {
        Ok(id) => format!("<result><id>{id}</id><success>true</success></result>"),
        Err((code, message)) => format!(
            "<result><errors><message>{}</message><statusCode>{code}</statusCode></errors>\
             <id xsi:nil=\"true\"/><success>false</success></result>",
            escape(&message)
        ),
    }
}

fn create(call: &Call<'_>) -> Result<String, Fault> {
    let mut results = String::new();
    for sobject in call.operation.children_named(None, "sObjects") {
        let (_, prefix) = sobject_type(sobject)?;
        let id = {
            let mut inner = call.state.inner();
            inner.soap_ids += 1;
            records::new_id(prefix, inner.soap_ids)
        };
        results.push_str(&save_result(Ok(id)));
    }
    Ok(format!("<createResponse>{results}</createResponse>"))
}

fn update(call: &Call<'_>) -> Result<String, Fault> {
    let mut results = String::new();
    for sobject in call.operation.children_named(None, "sObjects") {
        sobject_type(sobject)?;
        let id = sobject
            .child(None, "Id")
            .filter(|id| !id.is_nil())
            .map_or("", |id| id.text.trim());
        results.push_str(&save_result(checked_id(id, "update")));
    }
    Ok(format!("<updateResponse>{results}</updateResponse>"))
}

fn delete(call: &Call<'_>) -> Result<String, Fault> {
    let results: String = call
        .operation
        .children_named(None, "ids")
        .map(|id| save_result(checked_id(id.text.trim(), "delete")))
        .collect();
    Ok(format!("<deleteResponse>{results}</deleteResponse>"))
}

/// The 18-character form of an id given to `update` or `delete`, or the record's error.
fn checked_id(id: &str, call: &str) -> Result<String, (&'static str, String)> {
    if id.is_empty() {
        return Err((
            "MISSING_ARGUMENT",
            format!("Id not specified in an {call} call"),
        ));
    }
    if !records::is_id(id) {
        return Err(("MALFORMED_ID", format!("malformed id {id}")));
    }
    Ok(if id.len() == 15 {
        records::id_with_checksum(id)
    } else {
        id.to_owned()
    })
}

/// A plausible subset of `DescribeSObjectResult`, elements in the WSDL's order.
fn describe(call: &Call<'_>) -> Result<String, Fault> {
    let named = call
        .operation
        .child_text("sObjectType")
        .unwrap_or("")
        .trim();
    let prefix = records::key_prefix(named).ok_or_else(|| invalid_type(named))?;
    let name = records::canonical(named);
    let custom = name.ends_with("__c");
    let label = name.trim_end_matches("__c").replace('_', " ");
    let mut fields = vec![
        ("Id", "id", "tns:ID", 18, false, false, "Record ID"),
        ("Name", "string", "xsd:string", 255, true, false, "Name"),
    ];
    if name == "Account" {
        fields.push((
            "Industry",
            "picklist",
            "xsd:string",
            255,
            true,
            true,
            "Industry",
        ));
        fields.push((
            "BillingCity",
            "string",
            "xsd:string",
            40,
            true,
            true,
            "Billing City",
        ));
    }
    fields.push((
        "CreatedDate",
        "datetime",
        "xsd:dateTime",
        0,
        false,
        false,
        "Created Date",
    ));
    let fields: String = fields
        .iter()
        .map(
            |(field, kind, soap_type, length, createable, nillable, label)| {
                format!(
                    "<fields><createable>{createable}</createable><custom>false</custom>\
                 <label>{label}</label><length>{length}</length><name>{field}</name>\
                 <nillable>{nillable}</nillable><soapType>{soap_type}</soapType>\
                 <type>{kind}</type><updateable>{createable}</updateable></fields>"
                )
            },
        )
        .collect();
    Ok(format!(
        "<describeSObjectResponse><result><activateable>false</activateable>\
         <createable>true</createable><custom>{custom}</custom><customSetting>false</customSetting>\
         <deletable>true</deletable><deprecatedAndHidden>false</deprecatedAndHidden>\
         <feedEnabled>false</feedEnabled>{fields}<keyPrefix>{prefix}</keyPrefix>\
         <label>{label}</label><labelPlural>{label}s</labelPlural><layoutable>true</layoutable>\
         <mergeable>false</mergeable><mruEnabled>true</mruEnabled><name>{name}</name>\
         <queryable>true</queryable><replicateable>true</replicateable>\
         <retrieveable>true</retrieveable><searchable>true</searchable>\
         <triggerable>true</triggerable><undeletable>true</undeletable>\
         <updateable>true</updateable></result></describeSObjectResponse>",
        label = escape(&label),
    ))
}
