"""markdown.js in the browser: what replies render to, and that no input makes it build
anything but its own elements and attributes (the page's own scripts do the rendering,
imported as the page imports them)."""
from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed "
                    "(pip install -r requirements-dev.txt)")

RENDER = """async (texts) => {
    const { render } = await import('/web/markdown.js');
    return texts.map((text) => { const box = document.createElement('div'); box.append(render(text)); return box.innerHTML; });
}"""

CASES = {
    "# Title\nSome *em* and **strong** text.": "<h3>Title</h3><p>Some <em>em</em> and <strong>strong</strong> text.</p>",
    "- one\n- two\n\n3. three\n4. four": "<ul><li>one</li><li>two</li></ul><ol start=\"3\"><li>three</li><li>four</li></ol>",
    "> quoted **bold**\n> more": "<blockquote><p>quoted <strong>bold</strong><br>more</p></blockquote>",
    "see https://example.org/a_b.": '<p>see <a href="https://example.org/a_b" target="_blank" '
                                    'rel="noopener noreferrer nofollow">https://example.org/a_b</a>.</p>',
    "snake_case_name and 2 * 3 * 4": "<p>snake_case_name and 2 * 3 * 4</p>",
    "`a <b> c` \\*not em\\*": "<p><code>a &lt;b&gt; c</code> *not em*</p>",
    "---": "<hr>",
}

HOSTILE = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<svg/onload=alert(1)>",
    "[x](javascript:alert(1))", "[x]( javascript:alert(1))", "[x](JaVaScRiPt:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", "[x](vbscript:msgbox(1))",
    "![x](https://evil.example/track.png)", "<a href=\"javascript:alert(1)\">x</a>",
    "<iframe srcdoc=\"<script>alert(1)</script>\">", "**<img src=x onerror=alert(1)>**",
    "```\n</code></pre><script>alert(1)</script>\n```", "<style>*{display:none}</style>",
    "[x](https://ok.example/\" onmouseover=\"alert(1))", "<math><mi xlink:href=\"javascript:alert(1)\">",
    "&lt;script&gt;alert(1)&lt;/script&gt;", "> <details open ontoggle=alert(1)>",
]
ALLOWED = {"p", "br", "h3", "h4", "h5", "h6", "h7", "h8", "strong", "em", "code", "pre", "ul", "ol", "li",
           "blockquote", "hr", "a", "div", "span", "button"}
ALLOWED_ATTRIBUTES = {"href", "target", "rel", "class", "type", "aria-label", "start", "data-language"}


def test_replies_render_to_the_expected_elements(page):
    assert page.evaluate(RENDER, list(CASES)) == list(CASES.values())


def test_no_input_builds_foreign_elements_attributes_or_links(page):
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.evaluate(RENDER, HOSTILE)  # rendering must not throw
    found = page.evaluate("""async (texts) => {
        const { render } = await import('/web/markdown.js');
        const box = document.createElement('div');
        for (const text of texts) box.append(render(text));
        return [...box.querySelectorAll('*')].map((el) => [el.localName, [...el.attributes].map((a) => [a.name, a.value])]);
    }""", HOSTILE)
    assert {tag for tag, _ in found} <= ALLOWED
    attributes = [(name, value) for _, pairs in found for name, value in pairs]
    assert {name for name, _ in attributes} <= ALLOWED_ATTRIBUTES
    hrefs = [value for name, value in attributes if name == "href"]
    assert all(href.startswith(("https://", "http://", "mailto:")) for href in hrefs), hrefs
    assert dialogs == [] and page.errors == []
