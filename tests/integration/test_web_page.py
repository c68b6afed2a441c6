"""The chat page as the API serves it: public files, strict headers, nothing else
under /web/, and scripts that never hand a string to an HTML parser (the browser
tests in tests/browser drive it; these hold without a browser)."""
from __future__ import annotations

import re

from api.web import FILES, STATIC


def test_the_page_and_its_files_are_served_without_a_key_with_strict_headers(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = dict(part.strip().split(" ", 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'" and "unsafe" not in page.headers["Content-Security-Policy"]
    assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'none'"
    assert csp["require-trusted-types-for"] == "'script'"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "<script>" not in page.get_data(as_text=True)  # no inline script, only src=
    for src in re.findall(r'(?:src|href)="(/web/[^"]+)"', page.get_data(as_text=True)):
        asset = client.get(src)
        assert asset.status_code == 200, src
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/web/app.js").mimetype == "text/javascript"  # module scripts need it


def test_only_the_pages_own_files_are_served(client):
    for path in ("/web/../__init__.py", "/web/..%2F__init__.py", "/web/index.html.bak", "/web/%00", "/web/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["type"] == "not_found"


def test_the_scripts_never_parse_html_from_strings():
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|"
                       r"createContextualFragment|DOMParser|srcdoc")
    scripts = [name for name in FILES if name.endswith(".js")]
    assert {"app.js", "markdown.js", "stream.js"} <= set(scripts)
    for name in scripts:
        found = sinks.findall((STATIC / name).read_text())
        assert not found, f"{name} uses {found}"
