//! SOAP data operations: query paging, create/update/delete, describe, Metadata and Apex.

use super::soap_tests::{PARTNER, U, envelope, soap, text_of};
use super::*;

fn records(body: &str) -> usize {
    body.matches("<records xsi:type=").count()
}

#[tokio::test]
async fn query_and_query_more_page_by_batch_size() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let query =
        "<urn:query><urn:queryString>SELECT Id, Name FROM Account</urn:queryString></urn:query>";
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", query)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(
        "<queryResponse><result xsi:type=\"QueryResult\"><done>true</done>\
         <queryLocator xsi:nil=\"true\"/><records xsi:type=\"sf:sObject\"><sf:type>Account</sf:type>\
         <sf:Id>001Mk0000000001IAA</sf:Id><sf:Id>001Mk0000000001IAA</sf:Id>\
         <sf:Name>Burlington Textiles Corp of America</sf:Name></records>"
    ), "{body}");
    assert!(body.contains("<sf:Name>Grand Hotels &amp; Resorts Ltd</sf:Name>"));
    assert!(
        body.ends_with("<size>3</size></result></queryResponse></soapenv:Body></soapenv:Envelope>")
    );
    assert_eq!(records(&body), 3);

    let options = "<urn:QueryOptions><urn:batchSize>2</urn:batchSize></urn:QueryOptions>";
    let all = "<urn:queryAll><urn:queryString>select name, Industry, Nope from account where x = 1</urn:queryString></urn:queryAll>";
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), options, all)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<queryAllResponse><result xsi:type=\"QueryResult\"><done>false</done>"));
    assert!(
        body.contains("<sf:Id xsi:nil=\"true\"/><sf:Name>Burlington"),
        "{body}"
    );
    assert!(body.contains("<sf:Industry>Apparel</sf:Industry><sf:Nope xsi:nil=\"true\"/>"));
    assert_eq!(
        (records(&body), text_of(&body, "size")),
        (2, "3".to_owned())
    );
    let locator = text_of(&body, "queryLocator");
    assert!(
        locator.starts_with("01g") && locator.ends_with("-2"),
        "{locator}"
    );
    assert_eq!(locator.len(), 20);

    let more =
        format!("<urn:queryMore><urn:queryLocator>{locator}</urn:queryLocator></urn:queryMore>");
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", &more)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<queryMoreResponse><result xsi:type=\"QueryResult\"><done>true</done><queryLocator xsi:nil=\"true\"/>"));
    assert!(body.contains("Grand Hotels"));
    assert_eq!(
        (records(&body), text_of(&body, "size")),
        (1, "3".to_owned())
    );
    // A locator page of one: 1 of 3, then 2 of 3 with the next locator.
    let (_, _, body) = soap(
        &f,
        U,
        &[],
        envelope(
            PARTNER,
            Some(&token),
            "<urn:QueryOptions><urn:batchSize>1</urn:batchSize></urn:QueryOptions>",
            &more.replace("-2<", "-1<"),
        ),
    )
    .await;
    assert_eq!(records(&body), 1);
    assert!(text_of(&body, "queryLocator").ends_with("-2"));

    let bad = "<urn:queryMore><urn:queryLocator>01gnope-2</urn:queryLocator></urn:queryMore>";
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", bad)).await;
    assert_eq!(status, 500);
    assert!(body.contains("<faultcode>sf:INVALID_QUERY_LOCATOR</faultcode>"));
    assert!(body.contains("xsi:type=\"sf:InvalidQueryLocatorFault\""));

    let limited =
        "<urn:query><urn:queryString>SELECT Id FROM Contact LIMIT 1</urn:queryString></urn:query>";
    let (_, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", limited)).await;
    assert_eq!(
        (records(&body), text_of(&body, "size")),
        (1, "1".to_owned())
    );
    assert!(body.contains("<sf:type>Contact</sf:type><sf:Id>003"));
    for (query, code) in [
        ("SELEC Id FROM Account", "MALFORMED_QUERY"),
        ("SELECT Id FROM Nope", "INVALID_TYPE"),
        ("SELECT Owner.Name FROM Account", "INVALID_FIELD"),
    ] {
        let call = format!("<urn:query><urn:queryString>{query}</urn:queryString></urn:query>");
        let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", &call)).await;
        assert_eq!(status, 500);
        assert!(
            body.contains(&format!("<faultcode>sf:{code}</faultcode>")),
            "{body}"
        );
    }

    // Enterprise records are typed by xsi:type and have no sf:type.
    let ent = "urn:enterprise.soap.sforce.com";
    let (status, _, body) = soap(
        &f,
        "/services/Soap/c/61.0",
        &[],
        envelope(ent, Some(&token), "", query),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\""));
    assert!(
        body.contains(
            "<records xsi:type=\"sf:Account\"><sf:Id>001Mk0000000001IAA</sf:Id><sf:Name>"
        )
    );
    assert_eq!(
        f.org
            .soap_calls()
            .iter()
            .filter(|c| c.api == "enterprise")
            .count(),
        1
    );
}

#[tokio::test]
async fn create_update_delete_and_describe() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let create = "<urn:create><urn:sObjects><urn1:type xmlns:urn1=\"urn:sobject.partner.soap.sforce.com\">Account</urn1:type><Name>A</Name></urn:sObjects>\
                  <urn:sObjects><type>Contact</type><LastName>B</LastName></urn:sObjects></urn:create>";
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", create)).await;
    assert_eq!(status, 200, "{body}");
    let results: Vec<&str> = body.split("<result>").skip(1).collect();
    assert_eq!(results.len(), 2, "{body}");
    let account = text_of(results[0], "id");
    assert!(
        account.starts_with("001") && account.len() == 18,
        "{account}"
    );
    assert!(text_of(results[1], "id").starts_with("003"));
    assert_ne!(account, text_of(results[1], "id"));
    assert!(body.contains("<createResponse><result><id>001"));
    assert!(body.contains("</id><success>true</success></result>"));

    let update = format!(
        "<urn:update><urn:sObjects><type>Account</type><Id>{}</Id><Name>C</Name></urn:sObjects>\
         <urn:sObjects><type>Account</type><Name>D</Name></urn:sObjects></urn:update>",
        &account[..15]
    );
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", &update)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(
            "<updateResponse><result><id>{account}</id><success>true</success></result><result>\
         <errors><message>Id not specified in an update call</message>\
         <statusCode>MISSING_ARGUMENT</statusCode></errors><id xsi:nil=\"true\"/>\
         <success>false</success></result></updateResponse>"
        )),
        "{body}"
    );

    let delete =
        format!("<urn:delete><urn:ids>{account}</urn:ids><urn:ids>bad</urn:ids></urn:delete>");
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", &delete)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!(
        "<deleteResponse><result><id>{account}</id><success>true</success></result><result><errors>"
    )));
    assert!(body.contains("<statusCode>MALFORMED_ID</statusCode>"));

    let unknown = "<urn:create><urn:sObjects><type>Nope</type></urn:sObjects></urn:create>";
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", unknown)).await;
    assert_eq!(status, 500);
    assert!(body.contains("<faultcode>sf:INVALID_TYPE</faultcode>"));

    let describe =
        "<urn:describeSObject><urn:sObjectType>account</urn:sObjectType></urn:describeSObject>";
    let (status, _, body) = soap(&f, U, &[], envelope(PARTNER, Some(&token), "", describe)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<describeSObjectResponse><result><activateable>false</activateable>"));
    assert!(body.contains(
        "<keyPrefix>001</keyPrefix><label>Account</label><labelPlural>Accounts</labelPlural>"
    ));
    assert!(body.contains("<name>Account</name>"));
    assert!(body.contains("<fields><createable>false</createable><custom>false</custom><label>Record ID</label><length>18</length><name>Id</name>"));
    assert_eq!(body.matches("<fields>").count(), 5);
}

#[tokio::test]
async fn metadata_list_and_apex_echo() {
    let f = fixture().await;
    let token = login(&f, USER).await;
    let md = "http://soap.sforce.com/2006/04/metadata";
    let list = "<urn:listMetadata><urn:queries><urn:type>ApexClass</urn:type></urn:queries><urn:asOfVersion>61.0</urn:asOfVersion></urn:listMetadata>";
    let (status, headers, body) = soap(
        &f,
        "/services/Soap/m/61.0/00D000000000001EAA",
        &[],
        envelope(md, Some(&token), "", list),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/xml; charset=utf-8");
    assert!(body.starts_with(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><soapenv:Envelope \
         xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns=\"http://soap.sforce.com/2006/04/metadata\"><soapenv:Body><listMetadataResponse><result>"
    ), "{body}");
    assert_eq!(body.matches("<result>").count(), 2);
    assert!(body.contains(
        "<fileName>classes/OrderService.cls</fileName><fullName>OrderService</fullName><id>01p"
    ));
    assert!(body.contains("<type>ApexClass</type></result>"));
    assert_eq!(f.org.soap_calls()[0].api, "metadata");

    let class = "http://soap.sforce.com/schemas/class/OrderService";
    let echo = "<urn:echo><urn:text>a &lt; b</urn:text></urn:echo>";
    let (status, _, body) = soap(
        &f,
        "/services/Soap/class/OrderService",
        &[],
        envelope(class, Some(&token), "", echo),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("xmlns=\"{class}\"")));
    assert!(
        body.contains(
            "<soapenv:Body><echoResponse><result>a &lt; b</result></echoResponse></soapenv:Body>"
        ),
        "{body}"
    );
    let (status, _, body) = soap(
        &f,
        "/services/Soap/class/OrderService",
        &[],
        envelope(class, None, "", echo),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains(&format!(
        "xmlns:sf=\"{class}\"><soapenv:Body><soapenv:Fault><faultcode>sf:INVALID_SESSION_ID"
    )));
    let calls = f.org.soap_calls();
    assert_eq!(
        (calls[1].api.as_str(), calls[1].operation.as_str()),
        ("apex", "echo")
    );
}
