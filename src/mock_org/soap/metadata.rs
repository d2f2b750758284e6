//! Metadata API (`listMetadata`, and the stand-in's `echo`) and Apex web services (`echo`).

use super::answers::{Fault, element, fault, ok};
use super::call::{Api, Call};
use super::envelope::escape;
use super::partner;
use super::records;
use crate::mock_org::state::MockResponse;
use crate::mock_org::token::user_id;

const DATE: &str = "2024-05-01T10:00:00.000Z";

pub(super) fn answer(call: &Call<'_>) -> MockResponse {
    let body = match (call.api, call.operation.local.as_str()) {
        (Api::Apex { .. }, _) => Ok(apex_echo(call)),
        (_, "listMetadata") => list_metadata(call),
        _ => Ok(partner::echo(call)),
    };
    match body {
        Ok(body) => ok(call.api, call.usage, &body),
        Err(error) => fault(call.api, &error),
    }
}

/// `<echo><text>…</text></echo>` → `<echoResponse><result>…</result></echoResponse>` (a nil
/// result for a missing or nil argument, as Apex answers a null String).
fn apex_echo(call: &Call<'_>) -> String {
    let text = call
        .operation
        .child(None, "text")
        .filter(|t| !t.is_nil())
        .map(|t| t.text.as_str());
    format!("<echoResponse>{}</echoResponse>", element("result", text))
}

/// Two `FileProperties` for each of the (at most three) `queries`' types.
fn list_metadata(call: &Call<'_>) -> Result<String, Fault> {
    let queries: Vec<&str> = call
        .operation
        .children_named(None, "queries")
        .filter_map(|q| q.child_text("type"))
        .map(str::trim)
        .collect();
    if queries.len() > 3 {
        let message = "Too many queries. Specify at most 3 queries.";
        return Err(Fault::new("INVALID_OPERATION", message));
    }
    let user = user_id(call.user);
    let name = escape(call.username);
    let mut results = String::new();
    for kind in queries {
        let (prefix, folder, suffix, names) = match kind {
            "ApexClass" => (
                "01p",
                "classes",
                ".cls",
                ["OrderService", "OrderServiceTest"],
            ),
            "ApexTrigger" => (
                "01q",
                "triggers",
                ".trigger",
                ["OrderTrigger", "CaseTrigger"],
            ),
            "CustomObject" => ("01I", "objects", ".object", ["Invoice__c", "Shipment__c"]),
            _ => ("0Af", "", "", ["One", "Two"]),
        };
        for (i, full_name) in names.iter().enumerate() {
            let id = records::id_with_checksum(&format!("{prefix}Mk00000{:05}", i + 1));
            let file = if folder.is_empty() {
                format!("{}/{full_name}", kind.to_ascii_lowercase())
            } else {
                format!("{folder}/{full_name}{suffix}")
            };
            results.push_str(&format!(
                "<result><createdById>{user}</createdById><createdByName>{name}</createdByName>\
                 <createdDate>{DATE}</createdDate><fileName>{}</fileName>\
                 <fullName>{full_name}</fullName><id>{id}</id>\
                 <lastModifiedById>{user}</lastModifiedById>\
                 <lastModifiedByName>{name}</lastModifiedByName>\
                 <lastModifiedDate>{DATE}</lastModifiedDate>\
                 <manageableState>unmanaged</manageableState><type>{}</type></result>",
                escape(&file),
                escape(kind),
            ));
        }
    }
    Ok(format!(
        "<listMetadataResponse>{results}</listMetadataResponse>"
    ))
}
