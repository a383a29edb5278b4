"""Safe outputs (autograder.safe_output): no student markup runs on the feedback or formgrade
pages, grades.csv starts no formula, and unusable names are refused.

Each XSS payload carries a marker ``PWNEDnn``; a rendered page is safe when no marker reaches an
executable context (a script, an event handler, a non-http URL, a frame, ...) and the page's
``<script>`` elements are exactly those nbconvert's template writes for an empty notebook.
"""

from __future__ import annotations

import copy
import csv
import io
import re
from collections import Counter
from pathlib import Path

import nbformat
import nbgrader
import pytest
from bleach import html5lib_shim
from nbconvert import HTMLExporter
from nbformat.v4 import (
    new_code_cell,
    new_markdown_cell,
    new_notebook,
    new_output,
    new_raw_cell,
)

from autograder.safe_output import (
    PLAIN_NOTICE,
    SanitizeNotebook,
    csv_cell,
    html_findings,
    markdown_findings,
    one_line,
    printable,
    safe_name,
    sanitize_html,
    sanitize_markdown,
    svg_findings,
    tex_findings,
)

# --- an independent judge of rendered pages -------------------------------------------------

FRAMES = {"script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "base",
          "link", "portal", "svg", "math", "meta"}
LINKS = {"href", "src", "action", "formaction", "data", "poster", "background", "xlink:href"}


def _scheme_ok(url: str) -> bool:
    url = re.sub(r"[\t\n\r]", "", url).strip("".join(map(chr, range(33)))).lower()
    match = re.match(r"([a-z][a-z0-9+.\-]*):", url)
    return (not match or match.group(1) in ("http", "https", "mailto")
            or re.match(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]", url) is not None)


def executable_contexts(page: str) -> list[str]:
    """Every piece of ``page`` a browser may run: script text and sources, handlers, non-http
    URLs, frames and the like, CSS ``url()``, and TeX ``\\href`` outside code."""
    parser = html5lib_shim.BleachHTMLParser(tags=None, strip=False, consume_entities=True,
                                            namespaceHTMLElements=False)
    found, raw, verbatim = [], False, 0
    for token in html5lib_shim.getTreeWalker("etree")(parser.parse(page)):
        kind, name = token["type"], token.get("name", "").lower()
        verbatim += {"StartTag": 1, "EndTag": -1}.get(kind, 0) * (name in ("pre", "code"))
        if kind in ("StartTag", "EmptyTag"):
            attrs = {key[1].lower(): value for key, value in token["data"].items()}
            if name in FRAMES:
                found.append(f"<{name} {attrs}>")
            for attr, value in attrs.items():
                if (attr.startswith("on") or attr in ("srcdoc", "style") and "url(" in value
                        or attr.startswith("data-") or attr in LINKS and not _scheme_ok(value)):
                    found.append(f"{attr}={value}")
            raw = name in ("script", "style")
        elif kind == "EndTag":
            raw = False
        elif kind == "Characters" and (raw or "\\href" in token["data"] and not verbatim):
            found.append(token["data"])
    return found


def page_scripts(page: str) -> Counter[str]:
    """The page's ``<script>`` elements (attributes and text)."""
    scripts = re.findall(r"<script\b[^>]*>.*?</script\s*>", page, re.DOTALL | re.IGNORECASE)
    return Counter(re.sub(r"\s+", " ", s) for s in scripts)


def markers(texts: list[str]) -> set[str]:
    return {m for text in texts for m in re.findall(r"PWNED\d\d", text)}


# --- the payloads ----------------------------------------------------------------------------

#: (id, markdown source, reported: the sanitiser must report it (None: mistune already escapes it))
MARKDOWN_VECTORS = [
    ("script-case", "<ScRiPt>alert('PWNED01')</ScRiPt>", True),
    ("img-onerror", "<img src=x onerror=\"alert('PWNED02')\">", True),
    ("svg-onload", "<svg onload=\"alert('PWNED03')\">", True),
    ("a-js-case", '<a href="jAvAsCrIpT:alert(\'PWNED04\')">x</a>', True),
    ("a-js-entities", '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;'
     "alert('PWNED05')\">x</a>", True),
    ("a-js-decimal-no-semicolons",
     '<a href="&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105'
     "&#0000112&#0000116&#0000058alert('PWNED06')\">x</a>", True),
    ("a-js-tab", "<a href=\"jav&#x09;ascript:alert('PWNED07')\">x</a>", True),
    ("a-js-leading-control", "<a href=\" &#14; javascript:alert('PWNED08')\">x</a>", True),
    ("a-vbscript", "<a href=\"vbscript:msgbox('PWNED09')\">x</a>", True),
    ("a-data-html", "<a href=\"data:text/html,<script>alert('PWNED10')</script>\">x</a>", True),
    ("mathml-href", "<math><maction actiontype=statusline xlink:href=\"javascript:"
     "alert('PWNED11')\">x</maction></math>", True),
    ("details-ontoggle", "<details open ontoggle=alert('PWNED12')><summary>s</summary></details>",
     True),
    ("unclosed-img", "<img src=x onerror=alert('PWNED13')//", None),
    ("unclosed-attribute-in-block", "<div>\n<img src=x onerror=\"alert('PWNED14')", True),
    ("md-link", "[click](javascript:alert('PWNED15'))", True),
    ("md-link-entity", "[click](&#106;avascript:alert('PWNED16'))", True),
    ("md-reference-link", "[click][r]\n\n[r]: javascript:alert('PWNED17')", True),
    ("md-autolink", "<javascript:alert('PWNED18')>", None),
    ("md-image-raw-onerror", "![x](x.png)<img src=\"x.png\" onerror=\"alert('PWNED19')\">", True),
    ("md-image-quote-breakout", "![x](x.png\" onerror=\"alert('PWNED20'))", None),
    ("iframe-srcdoc", "<iframe srcdoc=\"<script>alert('PWNED21')</script>\"></iframe>", True),
    ("object-data", "<object data=\"javascript:alert('PWNED22')\"></object>", True),
    ("embed-src", "<embed src=\"javascript:alert('PWNED23')\">", True),
    ("form-action", "<form action=\"javascript:alert('PWNED24')\"><button>go</button></form>",
     True),
    ("meta-refresh", "<meta http-equiv=refresh content=\"0;url=javascript:alert('PWNED25')\">",
     True),
    ("base-href", "<base href=\"javascript:alert('PWNED26')//\">", True),
    ("style-import", "<style>@import 'javascript:alert(\"PWNED27\")';</style>", True),
    ("style-attr-url", "<div style=\"background:url(javascript:alert('PWNED28'))\">x</div>", True),
    ("svg-script", "<svg><script>alert('PWNED29')</script></svg>", True),
    ("svg-animate-href", "<svg><a><animate attributeName=href values=\"javascript:"
     "alert('PWNED30')\"/><text y=20>x</text></a></svg>", True),
    ("mermaid-block", "```mermaid\n<img src=x onerror=alert('PWNED31')>\n```", True),
    ("mathjax-href", "$\\href{javascript:alert('PWNED32')}{x}$", True),
    ("nested-script", "<scr<script>ipt>alert('PWNED33')</script>", True),
    ("slash-separated", "<img/src=x/onerror=alert('PWNED34')>", None),
    ("noscript-mxss", "<noscript><p title=\"</noscript><img src=x onerror=alert('PWNED35')>\">",
     True),
    ("empty-comment", "<!--><img src=x onerror=alert('PWNED36')>-->", True),
    ("body-onload", "<body onload=alert('PWNED37')>", True),
    ("bootstrap-data-api", "<a data-toggle=collapse data-target=\"<img src=x onerror="
     "alert('PWNED38')>\">x</a>", True),
    ("custom-element", "<x-tag onclick=\"alert('PWNED39')\">x</x-tag>", True),
    ("colon-entity", "<a href=\"javascript&colon;alert('PWNED40')\">x</a>", True),
    ("handler-entities", "<img src=x onerror=\"&#97;lert('PWNED41')\">", True),
    ("textarea-swallow", "<textarea>PWNED42 the rest of the page", True),
    ("table-background", "<table background=\"javascript:alert('PWNED43')\"><tr><td>x</td></tr>"
     "</table>", True),
    ("img-srcset", "<img srcset=\"javascript:alert('PWNED44') 1x\">", True),
    ("input-autofocus", "<input autofocus onfocus=\"alert('PWNED45')\">", True),
    ("unclosed-comment", "<!-- hides the rest of the page PWNED46", False),
    ("closes-page-div", "</div></div><b>PWNED47 outside the answer</b>", False),
]

BENIGN_ANSWER = """## My answer

The filters in **layer 1** detect *edges*; deeper ones respond to `x < 3` and `List<int>`-like
textures.<br>
A second line, with <sub>sub</sub>, <sup>sup</sup>, <u>u</u> and <span style="color:red">red</span>.

1. first
2. second, see [the paper](https://arxiv.org/abs/1311.2901) and <https://example.org>
   - nested with $x^2 + y_i$ and $a < b$

$$\\frac{\\partial y}{\\partial x} = \\sum_i w_i$$

> a quote: 3 > 2

| layer | size |
|:------|-----:|
| conv1 | 64   |

- [x] done
- [ ] todo

![fig](figures/saliency.png) <img src="attention.png" width="300" alt="map">
![inline](data:image/png;base64,iVBORw0KGgo=)

<details><summary>more</summary>hidden <font color="blue">text</font></details>

<!-- a note to myself -->

```python
print("<b>" if a < b else "&amp;")
```
"""


# --- markdown ------------------------------------------------------------------------------

@pytest.mark.parametrize("source,reported", [v[1:] for v in MARKDOWN_VECTORS],
                         ids=[v[0] for v in MARKDOWN_VECTORS])
def test_markdown_vectors_are_neutralised(source, reported):
    cleaned, found = sanitize_markdown(source)
    assert markdown_findings(cleaned) == []
    assert sanitize_markdown(cleaned) == (cleaned, [])  # idempotent
    if reported is not None:
        assert any(f.active for f in found) == reported, found
        assert bool(found)
    # rendered as nbconvert does, no payload reaches an executable context
    page = f"<html><body><div>{_render(cleaned)}</div></body></html>"
    assert not markers(executable_contexts(page))


def test_the_judge_sees_the_payloads_when_nothing_is_sanitised():
    # the markdown renderer nbconvert uses lets all of these through unchanged
    seen = set()
    for _, source, reported in MARKDOWN_VECTORS:
        if reported:
            page = f"<html><body><div>{_render(source)}</div></body></html>"
            seen |= markers(executable_contexts(page))
    assert len(seen) >= 35, sorted(seen)


def _render(source: str) -> str:
    from autograder.safe_output import _render_markdown

    return _render_markdown(source)


def test_a_normal_answer_is_left_byte_for_byte():
    assert sanitize_markdown(BENIGN_ANSWER) == (BENIGN_ANSWER, [])


@pytest.mark.parametrize("source", [
    "if a<b and c>d then", "x <- y in R; a <= b; 3 < 4 > 2", "<T extends Foo>", "<b>unclosed bold",
    "<me@uni.edu> and <https://x.org>", "$$\\begin{align} a &< b \\\\ c &= d \\end{align}$$",
    "<center>x</center> <p align=justify>y</p> <kbd>Ctrl</kbd>", "<a name=\"x\"></a> [go](#x)",
    "<span style=\"font-family: 'Times New Roman'; font-size: 12pt\">t</span>",
    "<img src='https://x.org/a.png' alt='a' width=100 height=50>", "Term\n: definition",
    "Use `<script>` tags", "```html\n<script>alert(1)</script>\n```", "    <script>code</script>",
    "<input type='checkbox' checked> done", "&lt;script&gt; as text", "<ol start=3><li>c</li></ol>",
])
def test_ordinary_markdown_is_left_alone(source):
    assert sanitize_markdown(source) == (source, [])


def test_an_answer_with_a_script_keeps_its_formatting_and_shows_the_script_as_text():
    source = "**Bold** claim, $x^2$, `code`:\n\n- item <script>alert('PWNED90')</script>\n"
    cleaned, found = sanitize_markdown(source)
    assert [f.what for f in found] == ["<script>"]
    assert "**Bold** claim, $x^2$, `code`:" in cleaned and "- item" in cleaned
    rendered = _render(cleaned)
    assert "<strong>Bold</strong>" in rendered and "&lt;script&gt;" in rendered.replace(">", "&gt;")
    assert "<script" not in rendered


def test_an_answer_that_cannot_be_escaped_tag_by_tag_is_shown_as_plain_text():
    source = "Answer ```` with [a link](javascript:alert('PWNED91')) and ``` fences"
    cleaned, found = sanitize_markdown(source)
    assert found and cleaned.startswith(PLAIN_NOTICE)
    assert source in cleaned  # the student's text, whole
    assert "<a " not in _render(cleaned)


def test_tex_links_and_loaders_are_found():
    assert tex_findings(r"$\href{https://x.org}{ok}$ $x^2$") == []
    assert [f.what for f in tex_findings(r"$\href{ javascript:alert(1)}{x}$")] == [
        r"\href with javascript: URL"]
    assert tex_findings(r"\newcommand{\h}{\href}") and tex_findings(r"$\require{x}$")


def test_html_findings_allow_tables_and_images_but_not_handlers():
    table = '<table border="1" class="dataframe"><tr><th>a</th><td>1</td></tr></table>'
    assert html_findings(table) == []
    assert html_findings('<img src="data:image/png;base64,AAAA" width="10">') == []
    assert [f.what for f in html_findings("<p onclick=x>y</p>")] == ["onclick= handler"]


def test_sanitize_html_drops_scripts_and_styles_with_their_content():
    frame = ("<div><style scoped>.dataframe td {color: red}</style><table class=\"dataframe\">"
             "<tr><td onmouseover=\"alert('PWNED92')\">1</td></tr></table>"
             "<script>alert('PWNED93')</script></div>")
    cleaned, found = sanitize_html(frame)
    assert "<table" in cleaned and ">1</td>" in cleaned
    assert "PWNED" not in cleaned and "color: red" not in cleaned
    assert {f.what for f in found} >= {"<script>", "onmouseover= handler", "<style>"}
    assert html_findings(cleaned) == []


def test_svg_from_matplotlib_is_kept_and_scripted_svg_is_not():
    plot = ('<svg xmlns:xlink="http://www.w3.org/1999/xlink" width="72pt" viewBox="0 0 72 72" '
            'xmlns="http://www.w3.org/2000/svg"><metadata><rdf:RDF><cc:Work/></rdf:RDF>'
            '</metadata><defs><style type="text/css">*{stroke-linecap: butt}</style>'
            '<clipPath id="p1"><rect width="72" height="72"/></clipPath></defs>'
            '<g clip-path="url(#p1)"><path d="M 0 0 L 1 1" style="fill: none"/>'
            '<use xlink:href="#m1" x="1" y="1"/><image xlink:href="data:image/png;base64,AAAA"/>'
            '</g></svg>')
    assert svg_findings(plot) == []
    assert svg_findings('<svg><script>alert(1)</script></svg>')
    assert svg_findings('<svg><foreignObject><img src=x onerror=alert(1)></foreignObject></svg>')
    assert svg_findings('<svg><use href="https://evil.example/x.svg#a"/></svg>')
    assert svg_findings('<svg><rect onclick="alert(1)"/></svg>')


# --- a whole notebook, rendered with nbconvert's and nbgrader's templates ---------------------

NBGRADER_TEMPLATES = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _attack_notebook() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": {"x": "</script><script>alert('PWNED50')</script>"}, "version_major": 2}}
    answer = new_markdown_cell("**Answer** <script>alert('PWNED51')</script>")
    answer.metadata["nbgrader"] = {"grade_id": "q1", "solution": True, "grade": True,
                                   "points": 1, "comment": "[x](javascript:alert('PWNED52'))",
                                   "score": 1}
    nb.cells.append(answer)  # first: unsanitised, some vectors below hide the rest of the page
    nb.cells += [new_markdown_cell(source) for _, source, _ in MARKDOWN_VECTORS]
    nb.cells += [new_markdown_cell(BENIGN_ANSWER),
                 new_raw_cell("<img src=x onerror=alert('PWNED53')>")]
    attached = new_markdown_cell("![a](attachment:a.svg) ![b](attachment:b.png)")
    attached.attachments = {
        "a.svg": {"image/svg+xml": "PHN2ZyBvbmxvYWQ9YWxlcnQoJ1BXTkVENTQnKT4="},
        "b.png": {"image/png": "iVBORw0KGgo=", "text/html": "<script>alert('PWNED55')</script>"}}
    nb.cells.append(attached)
    code = new_code_cell("show()", execution_count=3)
    code.outputs = [
        new_output("stream", name="stdout", text="<script>alert('PWNED56')</script>\n"),
        new_output("display_data", data={
            "text/html": "<b>bold</b><img src=x onerror=alert('PWNED57')>",
            "text/plain": "<b>"}),
        new_output("display_data", data={"application/javascript": "alert('PWNED58')",
                                         "text/plain": "<IPython.core.display.Javascript>"}),
        new_output("display_data", data={WIDGET_VIEW: {"model_id": "</script><script>"
                                                        "alert('PWNED59')</script>"},
                                         "text/plain": "HBox()"}),
        new_output("display_data", data={
            "image/svg+xml": "<svg><script>alert('PWNED60')</script></svg>",
            "text/plain": "<Figure>"}),
        new_output("display_data", data={"text/markdown": "[x](javascript:alert('PWNED61'))"}),
        new_output("display_data", data={"text/latex": "$\\href{javascript:alert('PWNED62')}{x}$"}),
        new_output("display_data", data={"image/png": "iVBORw0KGgo="},
                   metadata={"image/png": {"width": "1 onerror=alert('PWNED63')", "height": 10}}),
        new_output("display_data", data={"text/html": "<p>isolated PWNED64</p>"},
                   metadata={"text/html": {"isolated": True}}),
        new_output("execute_result", data={"text/plain": "1"}, execution_count=3),
        new_output("error", ename="ValueError", evalue="<script>alert('PWNED65')</script>",
                   traceback=["<img src=x onerror=alert('PWNED66')>"]),
    ]
    nb.cells.append(code)
    # what nbformat's schema forbids but a hand-edited file can still hold
    forged = new_code_cell("1", execution_count=4)
    forged["execution_count"] = "<img src=x onerror=alert('PWNED67')>"
    nb.cells.append(forged)
    return nb


def _exporter(template: str) -> HTMLExporter:
    return HTMLExporter(template_name=template,
                        extra_template_basedirs=[str(NBGRADER_TEMPLATES / "templates")],
                        extra_template_paths=[str(NBGRADER_TEMPLATES / "static" / "node_modules"
                                                  / "bootstrap" / "dist" / "css")])


def _page(nb: nbformat.NotebookNode, template: str) -> str:
    resources = {"nbgrader": {"notebook": "lab", "score": 1, "max_score": 2, "late_penalty": 0},
                 "base_url": "/base", "notebook_id": "lab", "index": 0, "total": 1}
    html, _ = _exporter(template).from_notebook_node(copy.deepcopy(nb), resources=resources)
    return html


@pytest.fixture(scope="module")
def sanitised():
    nb = _attack_notebook()
    nb, resources = SanitizeNotebook().preprocess(nb, {})
    return nb, resources


# feedback: nbgrader's feedback.html.j2 (what students get); formgrade: the instructor's page;
# classic and lab: nbconvert's own HTML templates.
@pytest.mark.parametrize("template", ["feedback", "formgrade", "classic", "lab"])
def test_sanitised_notebook_renders_no_student_script(sanitised, template):
    page = _page(sanitised[0], template)
    assert not markers(executable_contexts(page)), markers(executable_contexts(page))
    assert page_scripts(page) == page_scripts(_page(new_notebook(), template))
    assert "Answer" in page and "layer 1" in page  # the answers are still there


def test_unsanitised_feedback_page_would_run_them():
    nb = _attack_notebook()
    nb.cells.pop()  # nbconvert refuses to render a string execution count
    page = _page(nb, "feedback")
    seen = markers(executable_contexts(page))
    assert {"PWNED51", "PWNED52", "PWNED57", "PWNED58", "PWNED63"} <= seen
    assert page_scripts(page) != page_scripts(_page(new_notebook(), "feedback"))


def test_what_was_removed_is_reported(sanitised):
    nb, resources = sanitised
    reported = resources["sanitized"]
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader")) + 1
    assert f"cell {index} (q1): <script> removed" in reported
    assert f"cell {index} (q1): javascript: URL in comment removed" in reported
    assert any("application/javascript output removed" in r for r in reported)
    assert any("output metadata width=" in r for r in reported)
    assert any(r.endswith(": execution_count removed") for r in reported)
    assert any("widget-view" in r for r in resources["sanitized_quiet"])
    assert nb.metadata["autograder"]["sanitized"] == reported
    assert "widgets" not in nb.metadata
    benign = next(c for c in nb.cells if c.source == BENIGN_ANSWER)
    assert benign.source == BENIGN_ANSWER
    output_types = [sorted(o.get("data", {})) for o in nb.cells[-2].outputs]
    assert output_types == [[], ["text/html", "text/plain"], ["text/plain"], ["text/plain"],
                            ["text/plain"], [], [], ["image/png"], ["text/html"], ["text/plain"],
                            []]
    assert nb.cells[-2].outputs[7].metadata == {"image/png": {"height": 10}}
    assert nb.cells[-2].outputs[5].text.startswith("[autograder: output removed")
    nbformat.validate(nb)


def test_it_runs_where_nbgrader_registers_it():
    # nbgrader's converters call exporter.register_preprocessor(cls) for each configured class
    exporter = _exporter("feedback")
    exporter.register_preprocessor(SanitizeNotebook)
    nb = new_notebook(cells=[new_markdown_cell("x <script>alert('PWNED94')</script>")])
    resources = {"nbgrader": {"notebook": "lab", "score": 1, "max_score": 2, "late_penalty": 0}}
    page, resources = exporter.from_notebook_node(nb, resources=resources)
    assert not markers(executable_contexts(page))
    assert resources["sanitized"] == ["cell 1: <script> removed"]


def test_a_cell_with_very_many_tags_is_shown_as_plain_text():
    source = "<b>x</b> " * 600 + "<script>alert('PWNED95')</script>"
    cleaned, found = sanitize_markdown(source)
    assert cleaned.startswith(PLAIN_NOTICE) and [f.what for f in found] == ["<script>"]


def test_a_safe_notebook_is_left_unchanged():
    nb = new_notebook(cells=[new_markdown_cell(BENIGN_ANSWER), new_code_cell("x", outputs=[
        new_output("stream", name="stdout", text="a < b\n"),
        new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"},
                   metadata={"image/png": {"width": 300, "height": 200},
                             "needs_background": "light"}),
        new_output("execute_result", execution_count=1, data={
            "text/html": '<table class="dataframe"><tr><td>1</td></tr></table>',
            "text/plain": "   a\n0  1"})], execution_count=1)])
    before = copy.deepcopy(nb)
    nb, resources = SanitizeNotebook().preprocess(nb, {})
    assert nb == before
    assert resources["sanitized"] == resources["sanitized_quiet"] == []
    nbformat.validate(nb)


# --- grades.csv and names --------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1", "' =1"),
    ("\r=1", "' =1"),
    ("  =1", "'  =1"),
    ("\uff1d1+1", "'\uff1d1+1"),
    ("-3", "-3"),
    ("2.5", "2.5"),
    ("+4", "+4"),
    ("1e-3", "1e-3"),
    (-3, "-3"),
    (2.5, "2.5"),
    (None, ""),
    ("alice", "alice"),
    ("lab1: a cell timed out", "lab1: a cell timed out"),
    ("two\nlines\r\nhere", "two lines here"),
    ("bell\x07 and \x1b[31mred", "bell\\x07 and \\x1b[31mred"),
    ("evil\u202egnp.exe", "evil\\u202egnp.exe"),
    ("-", "'-"),
])
def test_csv_cell_never_starts_a_formula(value, expected):
    assert csv_cell(value) == expected


def test_one_line_flattens_without_prefixing():
    assert one_line("-2+3\nsecond\x1b[2J") == "-2+3 second\\x1b[2J"
    assert one_line(None) == "" and one_line(1.5) == "1.5"


def test_csv_cells_stay_on_one_row():
    buffer = io.StringIO()
    csv.writer(buffer).writerow([csv_cell(v) for v in ["a\nb", "=1+1", "-3", "x\r\ny"]])
    rows = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert rows == [["a b", "'=1+1", "-3", "x y"]]
    assert buffer.getvalue().count("\n") == 1


@pytest.mark.parametrize("name", [
    "alice", "Bob Smith", "jean-luc.picard", "o'", "1_filters.ipynb", "student+1@uni.edu",
    "Zoë", "Łukasz", "Müller", "張偉", "محمد", "a" * 100])
def test_safe_name_accepts_ordinary_names(name):
    assert safe_name(name) == (name != "o'")


@pytest.mark.parametrize("name", [
    "", ".hidden", "..", "-rf", "a/b", "a\\b", "a\nb", "a\rb", "tab\there", "nul\x00",
    "esc\x1b[2J", "evil\u202egnp", " lead", "trail ", "a" * 101, "semi;colon", "$(cmd)",
    "quote\"", "<script>", "=1+1", "a|b", "zero\u200bwidth"])
def test_safe_name_refuses_unusable_names(name):
    assert not safe_name(name)


def test_printable_escapes_what_cannot_be_shown():
    assert printable("alice") == "'alice'"
    assert printable("a\nb\x1b[2J") == "'a\\nb\\x1b[2J'"
    assert printable("evil\u202egnp") == "'evil\\u202egnp'"
    assert printable("x" * 300, limit=5) == "'xxxxx'..."
    assert "\n" not in printable("\n" * 10)
