"""simple-salesforce as an sfproxy caller that logs in the legacy way: a SOAP login() answered by
sfproxy itself, then REST with the session id it handed out.

    python3 logins_client.py USERNAME PASSWORD VERSION [--wrong-password]

The proxy comes from HTTPS_PROXY (http://127.0.0.1:PORT, which requests honours) and the
interception CA from REQUESTS_CA_BUNDLE. simple-salesforce POSTs its login envelope to
https://login.salesforce.com/services/Soap/u/VERSION (domain "login"), takes the host of the
answer's serverUrl as the instance and sends every REST call to https://{that host}/services/data/
vVERSION/ with `Authorization: Bearer {sessionId}`.

Calls, in order: query("SELECT Id, Name FROM Account"); Account.create; the query again;
Account.get; Account.update; Account.get; Account.delete; Account.get, which must raise
SalesforceResourceNotFound. Prints one JSON object on stdout; the session id is never printed,
only whether it holds a "!" and what comes before it. Exits 2 on any failure, with
{"error": {"type", "message"}}.

With --wrong-password the login must fail: prints {"auth_failed": {"code", "message"}} from
SalesforceAuthenticationFailed and exits 0; exits 2 if the login succeeds or fails otherwise.
"""

import json
import os
import sys

from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceResourceNotFound,
)

QUERY = "SELECT Id, Name FROM Account"
NAME = "sfproxy logins test"
RENAMED = "sfproxy logins test, renamed"


def fail(kind, message):
    print(json.dumps({"error": {"type": kind, "message": str(message)}}))
    sys.exit(2)


def session_shape(session_id):
    """What may be printed of a session id: whether it has a '!' and the part before it."""
    has_bang = "!" in session_id
    return {"has_bang": has_bang, "prefix": session_id.split("!", 1)[0] if has_bang else None}


def login(username, password, version):
    # security_token="" is how a caller with a trusted IP range (or sfproxy) logs in: the
    # password is sent as is.
    return Salesforce(
        username=username,
        password=password,
        security_token="",
        domain="login",
        version=version,
    )


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    wrong = "--wrong-password" in sys.argv[1:]
    if len(args) != 3:
        fail("usage", "logins_client.py USERNAME PASSWORD VERSION [--wrong-password]")
    username, password, version = args
    for name in ("HTTPS_PROXY", "REQUESTS_CA_BUNDLE"):
        if not os.environ.get(name):
            fail("usage", f"{name} is not set")

    if wrong:
        try:
            login(username, password, version)
        except SalesforceAuthenticationFailed as e:
            print(json.dumps({"auth_failed": {"code": e.code, "message": e.auth_message}}))
            return
        except Exception as e:  # noqa: BLE001 - any other failure is the test's failure
            fail(type(e).__name__, e)
        fail("login", "a wrong password logged in")

    summary = {}
    try:
        sf = login(username, password, version)
        summary["session"] = session_shape(sf.session_id)
        summary["sf_instance"] = sf.sf_instance
        summary["base_url"] = sf.base_url

        before = sf.query(QUERY)
        summary["query_before"] = {"totalSize": before["totalSize"], "done": before["done"]}

        created = sf.Account.create({"Name": NAME, "Industry": "Testing"})
        record_id = created["id"]
        summary["create"] = {
            "id": record_id,
            "success": created["success"],
            "errors": created["errors"],
        }

        after = sf.query(QUERY)
        summary["query_after"] = {
            "totalSize": after["totalSize"],
            "done": after["done"],
            "records": [{"Id": r["Id"], "Name": r["Name"]} for r in after["records"]],
        }

        got = sf.Account.get(record_id)
        summary["get"] = {"Id": got["Id"], "Name": got["Name"], "Industry": got.get("Industry")}

        summary["update"] = sf.Account.update(record_id, {"Name": RENAMED})
        got = sf.Account.get(record_id)
        summary["get_after_update"] = {"Id": got["Id"], "Name": got["Name"]}

        summary["delete"] = sf.Account.delete(record_id)
        try:
            sf.Account.get(record_id)
            summary["get_after_delete"] = "found"
        except SalesforceResourceNotFound as e:
            summary["get_after_delete"] = {"status": e.status, "content": e.content}
    except Exception as e:  # noqa: BLE001 - any failure is reported, with what went before
        print(json.dumps(summary), file=sys.stderr)
        fail(type(e).__name__, e)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
