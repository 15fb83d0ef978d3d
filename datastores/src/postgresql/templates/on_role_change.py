# Written by Herd: Patroni's on_role_change callback for member {{ comment }}.
# Patroni runs it as `python3 -I <this file> <action> <role> <scope>`. It POSTs one
# JSON event to Herd, signed with this member's credential (HMAC-SHA256 over
# "<unix seconds>.<body>"; the credential itself is never sent), and always exits 0:
# a slow or failing receiver must never hold up or fail Patroni. Errors go to
# stderr, i.e. Patroni's log; the credential never does.
import hashlib
import hmac
import json
import sys
import time
import urllib.request

URL = {{ url }}
MEMBER = {{ member }}
TOKEN_FILE = {{ token_file }}
TIMEOUT = 2


class NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect would carry the report to another address: refuse it.
    def redirect_request(self, *args, **kwargs):
        return None


def main():
    action, role, scope = (sys.argv[1:] + ["", "", ""])[:3]
    try:
        with open(TOKEN_FILE, encoding="utf-8") as f:
            token = f.read().strip()
        body = json.dumps({"member": MEMBER, "action": action, "role": role, "scope": scope}).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(token.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            URL,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Herd-Member": MEMBER,
                "X-Herd-Timestamp": stamp,
                "X-Herd-Signature": "sha256=" + signature,
            },
        )
        # No proxy from the environment: the token goes to Herd only.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())
        with opener.open(request, timeout=TIMEOUT) as response:
            response.read(65536)
    except Exception as e:  # noqa: BLE001 - whatever happens, Patroni goes on
        print("herd on_role_change (%s %s) not delivered: %s" % (action, role, type(e).__name__ + ": " + str(e)),
              file=sys.stderr)


try:
    main()
except BaseException:  # noqa: BLE001
    pass
sys.exit(0)
