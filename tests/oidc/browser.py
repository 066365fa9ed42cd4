"""The browser leg of a sign-in at the test OpenID Provider, through its own pages.

    python3 browser.py VERIFICATION_URI_COMPLETE LOGIN
    python3 browser.py authorize AUTHORIZATION_URL LOGIN

The first (the device grant) opens the page with the code filled in, submits it, confirms the
device, signs in as LOGIN (the provider's development pages take any password) and consents.
The second is the system browser the console opens (authorization code with PKCE): it signs in
as LOGIN, consents, and follows the provider's redirect to the console's loopback address, whose
page must say the sign-in worked. Both print "signed in" at the end. Standard library only.
"""
import http.cookiejar
import sys
import urllib.parse
import urllib.request
from html.parser import HTMLParser


class Forms(HTMLParser):
    """The page's forms: action and fields (hidden or filled in)."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action", ""), "fields": {}})
        elif tag == "input" and self.forms and attrs.get("name"):
            self.forms[-1]["fields"][attrs["name"]] = attrs.get("value") or ""


def forms(html):
    parser = Forms()
    parser.feed(html)
    return parser.forms


def submitter(opener):
    """Submits a page's first form with `extra` fields; returns where it led and the page."""

    def submit(page_url, html, extra):
        form = forms(html)[0]
        fields = dict(form["fields"], **extra)
        target = urllib.parse.urljoin(page_url, form["action"])
        response = opener.open(target, urllib.parse.urlencode(fields).encode())
        return response.geturl(), response.read().decode()

    return submit


def main():
    if sys.argv[1] == "authorize":
        authorize(sys.argv[2], sys.argv[3])
        return
    uri, login = sys.argv[1], sys.argv[2]
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    submit = submitter(opener)

    response = opener.open(uri)
    url, page = response.geturl(), response.read().decode()
    url, page = submit(url, page, {})  # the code, filled in
    url, page = submit(url, page, {})  # "Confirm Device": confirm=yes is in the form
    url, page = submit(url, page, {"login": login, "password": "any"})
    if 'value="consent"' in page:
        url, page = submit(url, page, {})
    if "Sign-in Success" not in page and "success" not in page.lower():
        print(page[:2000], file=sys.stderr)
        sys.exit(1)
    print("signed in")


def authorize(uri, login):
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    submit = submitter(opener)

    response = opener.open(uri)
    url, page = response.geturl(), response.read().decode()
    url, page = submit(url, page, {"login": login, "password": "any"})
    if 'value="consent"' in page:
        url, page = submit(url, page, {})
    # The provider redirected to the console's loopback redirect, which answered the browser.
    if not url.startswith("http://127.0.0.1:") or "Signed in to Countersign" not in page:
        print(url, page[:2000], file=sys.stderr)
        sys.exit(1)
    print("signed in")


main()
