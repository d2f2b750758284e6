"""A real SOAP toolkit as an sfproxy caller: zeep calls the Partner API through the proxy.

    python3 soap_client.py ENDPOINT

ENDPOINT is the Partner URL in plain http, e.g. http://acme.my.salesforce.com/services/Soap/u/61.0;
the proxy is reached through HTTP_PROXY, which requests honours. zeep builds every envelope from
partner.wsdl (beside this file). No session is known here and none is sent: the envelopes have no
SessionHeader, and sfproxy puts the route's session in.

Calls, in order: getUserInfo; query("SELECT Id, Name FROM Account"); the same query with
QueryOptions batchSize=2, then queryMore until done; create one Account; describeSObject("Account");
logout. Prints one JSON object on stdout. On a SOAP fault it prints {"fault": {"code", "message"}}
and exits 3; on an HTTP error whose body is no SOAP envelope (a proxy's plain error, say) it
prints {"error": {"status", "body"}} and exits 4; on an answer zeep cannot parse against the WSDL
(an element it does not declare, out of order) {"error": {"parse"}} and exit 5.
"""

import json
import os
import sys

import requests
import zeep
import zeep.exceptions
import zeep.transports
import zeep.xsd  # SkipValue
from lxml import etree

PARTNER_NS = "urn:partner.soap.sforce.com"
SOBJECT_NS = "urn:sobject.partner.soap.sforce.com"
BINDING = "{%s}SoapBinding" % PARTNER_NS
WSDL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "partner.wsdl")
QUERY = "SELECT Id, Name FROM Account"
BATCH_SIZE = 2
# A bound on queryMore calls, so a server that never says done cannot loop the test forever.
MAX_PAGES = 100


def field(record, name):
    """The text of the sObject field `name` (an xsd:any element of the record), or None.

    zeep hands an xsd:any element it has no declaration for back as the lxml element; a field
    with xsi:nil comes back as None and one with an xsi:type as its bare value, name lost (so a
    server must not type the fields this test reads)."""
    for value in record["_value_1"] or []:
        if isinstance(value, etree._Element) and etree.QName(value).localname == name:
            return value.text
    return None


def result_of(reply):
    """The `result` of a call's answer. The output of every Partner call declares a SOAP header
    (LimitInfoHeader), so zeep answers {"header": ..., "body": {"result": ...}}."""
    body = reply["body"] if "body" in reply else reply
    return body["result"] if body is not None else None


def names(result):
    """The Name of each record of a QueryResult, in order."""
    return [field(record, "Name") for record in result["records"] or []]


def sobject(client, type_name, **fields):
    """A Partner sObject of `type_name` with `fields` as its xsd:any elements, and no Id (as a
    create sends it: zeep would send a required nillable Id as xsi:nil otherwise)."""
    sobject_type = client.get_type("{%s}sObject" % SOBJECT_NS)
    elements = []
    for name, value in fields.items():
        element = etree.Element("{%s}%s" % (SOBJECT_NS, name), nsmap={"sf": SOBJECT_NS})
        element.text = value
        elements.append(element)
    return sobject_type(type=type_name, Id=zeep.xsd.SkipValue, _value_1=elements)


def run(endpoint):
    session = requests.Session()  # trust_env: HTTP_PROXY is the proxy
    client = zeep.Client(wsdl=WSDL, transport=zeep.transports.Transport(session=session))
    service = client.create_service(BINDING, endpoint)

    user = result_of(service.getUserInfo())

    everything = result_of(service.query(QUERY))

    query_options = client.get_element("{%s}QueryOptions" % PARTNER_NS)
    headers = [query_options(batchSize=BATCH_SIZE)]
    page = result_of(service.query(QUERY, _soapheaders=headers))
    paged = names(page)
    pages = 1
    while not page["done"]:
        if pages >= MAX_PAGES:
            raise RuntimeError("queryMore: still not done after %d pages" % pages)
        page = result_of(service.queryMore(page["queryLocator"], _soapheaders=headers))
        paged.extend(names(page))
        pages += 1

    created = result_of(service.create([sobject(client, "Account", Name="sfproxy zeep test")]))[0]

    described = result_of(service.describeSObject("Account"))

    service.logout()

    return {
        "userName": user["userName"],
        "organizationId": user["organizationId"],
        "query_size": everything["size"],
        "query_names": names(everything),
        "paged_names": paged,
        "paged_pages": pages,
        "created_id": created["id"],
        "created_success": created["success"],
        "describe_name": described["name"],
        "describe_fields": [f["name"] for f in described["fields"] or []],
        "logout": "ok",
    }


def main():
    if len(sys.argv) != 2:
        print("usage: soap_client.py ENDPOINT", file=sys.stderr)
        return 2
    try:
        out = run(sys.argv[1])
    except zeep.exceptions.Fault as fault:
        print(json.dumps({"fault": {"code": fault.code, "message": fault.message}}))
        return 3
    except zeep.exceptions.TransportError as error:
        # An HTTP error whose body is no SOAP envelope.
        body = error.content.decode("utf-8", "replace") if error.content else ""
        print(json.dumps({"error": {"status": error.status_code, "body": body[:500]}}))
        return 4
    except (zeep.exceptions.XMLParseError, zeep.exceptions.XMLSyntaxError) as error:
        # An answer that is XML but not what partner.wsdl declares (zeep parses strictly).
        print(json.dumps({"error": {"parse": str(error)}}))
        return 5
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
