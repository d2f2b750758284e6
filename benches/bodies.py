"""The benchmarks' bodies, in one place for benches/run.sh and benches/callgrind.sh.

    python3 benches/bodies.py limits        # ~1 KB of JSON, shaped like Salesforce's /limits answer
    python3 benches/bodies.py soap-query    # a ~2 KB Partner query envelope (CallOptions,
                                            # QueryOptions, an empty SessionHeader for sfproxy to
                                            # fill, a long SOQL)
    python3 benches/bodies.py soap-answer   # a ~1.5 KB Partner queryResponse, on one line

Each is written to stdout. The answers go into the upstream's nginx config by sed: they hold no
`|`, `&` or `$`.
"""

import json
import sys

LIMITS = [
    "ActiveScratchOrgs", "AnalyticsExternalDataSizeMB", "ConcurrentAsyncGetReportInstances",
    "ConcurrentSyncReportRuns", "DailyApiRequests", "DailyAsyncApexExecutions",
    "DailyBulkApiBatches", "DailyBulkV2QueryFileStorageMB", "DailyBulkV2QueryJobs",
    "DailyDurableGenericStreamingApiEvents", "DailyDurableStreamingApiEvents",
    "DailyGenericStreamingApiEvents", "DailyStandardVolumePlatformEvents",
    "DataStorageMB", "FileStorageMB", "HourlyAsyncReportRuns", "HourlyDashboardRefreshes",
    "HourlyODataCallout", "HourlySyncReportRuns", "MassEmail", "SingleEmail",
]


def limits():
    body = {n: {"Max": 15000, "Remaining": 14999} for n in LIMITS}
    return json.dumps(body, separators=(",", ":")) + "\n"


def soap_query():
    fields = ", ".join(f"Custom_Field_{i}__c" for i in range(60))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:urn="urn:partner.soap.sforce.com">\n'
        "  <soapenv:Header>\n"
        "    <urn:CallOptions><urn:client>WarehouseSync/4.2</urn:client></urn:CallOptions>\n"
        "    <urn:QueryOptions><urn:batchSize>200</urn:batchSize></urn:QueryOptions>\n"
        "    <urn:SessionHeader><urn:sessionId></urn:sessionId></urn:SessionHeader>\n"
        "  </soapenv:Header>\n"
        "  <soapenv:Body>\n"
        f"    <urn:query><urn:queryString>SELECT Id, Name, {fields} FROM Account "
        "WHERE LastModifiedDate = TODAY ORDER BY Name LIMIT 200</urn:queryString></urn:query>\n"
        "  </soapenv:Body>\n"
        "</soapenv:Envelope>\n"
    )


def soap_answer():
    records = "".join(
        f'<records xsi:type="sf:sObject"><sf:type>Account</sf:type><sf:Id>001000000000{i:03d}AAA</sf:Id>'
        f"<sf:Id>001000000000{i:03d}AAA</sf:Id><sf:Name>Account {i}</sf:Name></records>"
        for i in range(10)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
        'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns="urn:partner.soap.sforce.com" '
        'xmlns:sf="urn:sobject.partner.soap.sforce.com" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><queryResponse><result xsi:type="QueryResult"><done>true</done>'
        '<queryLocator xsi:nil="true"/>' + records + "<size>10</size></result></queryResponse>"
        "</soapenv:Body></soapenv:Envelope>\n"
    )


BODIES = {"limits": limits, "soap-query": soap_query, "soap-answer": soap_answer}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in BODIES:
        sys.exit(f"usage: python3 bodies.py {{{'|'.join(BODIES)}}}")
    sys.stdout.write(BODIES[sys.argv[1]]())
