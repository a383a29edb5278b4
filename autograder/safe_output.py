"""Safe outputs: what students wrote reaches the instructor's pages and sheets as inert data.

- :class:`SanitizeNotebook`: an nbgrader preprocessor that rewrites a notebook so that nbconvert's
  HTML templates (nbgrader's feedback and formgrade pages included) render nothing that can run
  code: no scripts, event handlers, ``javascript:`` URLs, frames, forms, inline SVG/MathML,
  JavaScript or widget outputs, and no markup that swallows or closes the page's own.
- :func:`csv_cell`: a cell for ``grades.csv`` that a spreadsheet never reads as a formula;
  :func:`one_line`: any text as one line without control characters (for the text table).
- :func:`safe_name` and :func:`printable`: which student folder or notebook names can be used,
  and how to show any name in a report.

Markdown is checked *after* rendering it the way nbconvert's templates do (mistune with math,
attachments, task lists, mermaid), with the page's own markup after it, and parsed the way a
browser does (html5lib, as vendored by bleach). A cell that passes is left byte for byte; one that
fails gets its offending tags escaped (they then show as text) and is checked again; should it
still fail, it is shown as plain text in a code block.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from bleach import html5lib_shim
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.filters.strings import strip_files_prefix
from nbformat import NotebookNode, from_dict
from nbgrader.preprocessors import NbGraderPreprocessor

__all__ = [
    "Finding", "SanitizeNotebook", "csv_cell", "html_findings", "markdown_findings", "one_line",
    "printable", "safe_name", "sanitize_html", "sanitize_markdown", "svg_findings",
    "tex_findings",
]

# --- what may be rendered -------------------------------------------------------------------

#: Elements kept as written (their attributes are still checked).
ALLOWED_TAGS = frozenset("""
a abbr acronym address article aside b bdi bdo big blockquote br caption center cite code col
colgroup data dd del details dfn div dl dt em figcaption figure font footer h1 h2 h3 h4 h5 h6
header hgroup hr i img input ins kbd label legend li main mark meter nav nobr ol p pre progress q
rp rt ruby s samp section small span strike strong sub summary sup table tbody td tfoot th thead
time tr tt u ul var wbr
""".split())
#: Element names a browser gives a meaning to; those not allowed are removed and reported. Names
#: outside this set (``List<int>``, ``<T>``) are inert unknown elements and stay.
KNOWN_TAGS = ALLOWED_TAGS | html5lib_shim.HTML_TAGS | frozenset("""
applet basefont bgsound blink command element fencedframe frame frameset image isindex keygen
listing marquee math menuitem multicol nextid noembed noframes plaintext portal search
selectedcontent shadow spacer svg xmp
""".split())
#: Dropped with their content when an HTML fragment is cleaned (the rest are unwrapped).
DROP_CONTENT_TAGS = frozenset("""
script style template noscript iframe object embed applet textarea title xmp noembed noframes
plaintext select frameset frame head svg math
""".split())
GLOBAL_ATTRS = frozenset("class id title lang dir align valign style hidden role width height "
                         "border bgcolor color face size nowrap".split())
TAG_ATTRS: Mapping[str, frozenset[str]] = {
    "a": frozenset({"href", "name", "target", "rel"}),
    "img": frozenset({"src", "alt"}),
    "input": frozenset({"type", "disabled", "checked"}),
    "ol": frozenset({"start", "type", "reversed"}),
    "li": frozenset({"value"}),
    "details": frozenset({"open"}),
    "label": frozenset({"for"}),
    "time": frozenset({"datetime"}),
    "data": frozenset({"value"}),
    "meter": frozenset({"value", "min", "max", "low", "high", "optimum"}),
    "progress": frozenset({"value", "max"}),
    "td": frozenset({"colspan", "rowspan", "headers"}),
    "th": frozenset({"colspan", "rowspan", "headers", "scope", "abbr"}),
    "col": frozenset({"span"}),
    "colgroup": frozenset({"span"}),
    "table": frozenset({"cellpadding", "cellspacing", "summary"}),
    "blockquote": frozenset({"cite"}),
    "q": frozenset({"cite"}),
    "del": frozenset({"cite", "datetime"}),
    "ins": frozenset({"cite", "datetime"}),
}
URL_ATTRS = frozenset("href src action formaction cite background poster longdesc lowsrc dynsrc "
                      "data codebase ping usemap manifest icon profile archive classid "
                      "xlink:href".split())
#: Attributes that run or load code, act on other elements, or that the page's own scripts act on
#: (``data-*``: Bootstrap's data-api). Other attributes outside the allowed ones are inert and
#: may stay in markdown; cleaning HTML drops them all the same.
ACTIVE_ATTRS = frozenset({"srcdoc", "http-equiv", "is", "attributename", "form", "formtarget",
                          "popovertarget", "commandfor", "attributionsrc"})
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp)[;,]", re.IGNORECASE)
SVG_TAGS = frozenset("""
svg g defs desc title metadata symbol use path rect circle ellipse line polyline polygon text
tspan textpath image clippath mask pattern marker lineargradient radialgradient stop style filter
""".split())
SVG_NS = "http://www.w3.org/2000/svg"
HTML_NS = "http://www.w3.org/1999/xhtml"

#: Output MIME types kept unchanged (``text/html`` is cleaned, see also :data:`CHECKED_MIMES`).
KEPT_MIMES = frozenset({"text/plain", "image/png", "image/jpeg", "image/gif"})
RASTER_MIMES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
IMAGE_META = frozenset({"width", "height", "unconfined", "alt", "needs_background"})
#: A 1x1 transparent GIF, for an attachment whose every version was removed.
PLACEHOLDER_GIF = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"

NOTICE = "*[autograder: HTML that could run code or hide content was disabled in this answer]*"
PLAIN_NOTICE = ("*[autograder: this answer contained HTML that could run code or hide content; "
                "it is shown as plain text]*")
REMOVED_NOTICE = "*[autograder: this answer was removed: it could not be shown safely]*"


class Finding(NamedTuple):
    """One thing removed: ``what`` names it; ``active`` when it could run code or load it.

    Inactive findings (a ``<style>``, a widget view, markup left unclosed) are removed all the
    same, but are common in honest notebooks (pandas tables, tqdm bars), so are only logged
    (``resources["sanitized_quiet"]``), not reported.
    """

    what: str
    active: bool = True


# --- HTML ---------------------------------------------------------------------------------

def _parser() -> Any:
    """An HTML5 parser (the spec's algorithm, as browsers run it) that changes nothing."""
    return html5lib_shim.BleachHTMLParser(tags=None, strip=False, consume_entities=True,
                                          namespaceHTMLElements=False)


def _tokens(fragment: str) -> list[dict[str, Any]]:
    """The tree a browser builds from ``fragment`` inside a ``<div>``, as a token stream."""
    return list(html5lib_shim.getTreeWalker("etree")(_parser().parseFragment(fragment)))


def _page_tokens(fragment: str) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The tokens of ``fragment`` parsed inside a page's ``<body>``, and findings for what it
    adds to the page's ``<html>`` or ``<body>`` (a ``<body onload=...>`` anywhere does that,
    which parsing it as a fragment would hide)."""
    page = f"<!DOCTYPE html><html><head></head><body>{fragment}</body></html>"
    tokens = list(html5lib_shim.getTreeWalker("etree")(_parser().parse(page)))
    found: list[Finding] = []
    body = [i for i, t in enumerate(tokens) if t.get("name") == "body" and not t.get("namespace")]
    for token in tokens[:body[0] + 1]:
        if token["type"] == "StartTag" and token.get("data"):
            found += _element_findings(token)
    return tokens[body[0] + 1:body[-1]], found


def _scheme(url: str) -> str | None:
    """The scheme a browser reads in ``url`` (tabs and newlines removed), None if relative."""
    url = re.sub(r"[\t\n\r]", "", url).strip("".join(map(chr, range(33))))
    match = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", url)
    return match.group(1).lower() if match else None


def _url_finding(url: str, image: bool = False) -> Finding | None:
    """A finding when ``url`` is neither relative, http(s), mailto, nor (``image``) a raster."""
    scheme = _scheme(url)
    if scheme is None or scheme in SAFE_SCHEMES:
        return None
    if image and scheme == "data" and IMAGE_DATA.match(re.sub(r"\s", "", url)):
        return None
    if scheme == "data":
        kind = re.match(r"\s*data:([\w/+.-]*)", url, re.IGNORECASE)
        return Finding(f"data:{kind.group(1).lower() if kind else ''} URL")
    return Finding(f"{scheme}: URL")


def _css_finding(css: str) -> Finding | None:
    """A finding for CSS that loads or runs something, or that lays itself over the page."""
    low = css.lower()
    if re.search(r"expression|javascript|vbscript|@import|behavior|binding|\\|/\*|image-set"
                 r"|url\s*\((?!\s*['\"]?\s*#)", low):
        return Finding("CSS url()/expression")
    if re.search(r"position\s*:\s*(fixed|absolute|sticky)", low):
        return Finding("CSS position", active=False)
    return None


def _attr_finding(tag: str, name: str, value: str) -> Finding | None:
    """A finding for one attribute (its value already entity-decoded), None if it may stay."""
    if name.startswith("on"):
        return Finding(f"{name}= handler")
    if name in URL_ATTRS:
        return _url_finding(value, image=tag in ("img", "image"))
    if name in ("srcset", "imagesrcset"):
        urls = [part.split()[0] for part in value.split(",") if part.split()]
        return next((f for u in urls if (f := _url_finding(u, image=True))), None)
    if name == "style":
        return _css_finding(value)
    if name.startswith("data-") or name in ACTIVE_ATTRS:
        return Finding(f"{name}= attribute")
    if tag == "input" and name == "type" and value.strip().lower() != "checkbox":
        return Finding(f"<input type={value.strip().lower()}>")
    return None


def _tag_finding(name: str, namespace: str | None) -> Finding | None:
    """A finding for an element: foreign (SVG, MathML), custom, or known but not allowed."""
    if namespace not in (None, HTML_NS):
        if name.lower() == "script":
            return Finding("<script>")
        return Finding("<svg>" if namespace == SVG_NS else "<math>")
    if name in ALLOWED_TAGS:
        return None
    if name == "style":
        return Finding("<style>", active=False)
    if name in KNOWN_TAGS or "-" in name or ":" in name:
        return Finding(f"<{name}>")
    return None


def _element_findings(token: Mapping[str, Any]) -> list[Finding]:
    """Findings for a start tag: the element itself and each of its attributes."""
    name, namespace = token["name"].lower(), token.get("namespace")
    foreign = namespace not in (None, HTML_NS)
    attrs = {attr.lower(): str(value) for (_, attr), value in token.get("data", {}).items()}
    found = [_tag_finding(name, namespace)]
    if name == "input" and not foreign and "type" not in attrs:
        found.append(Finding("<input type=text>"))
    found += [_attr_finding(name, attr, value) for attr, value in attrs.items()]
    return [f for f in found if f]


def _structure_findings(tokens: list[dict[str, Any]], nonce: str) -> list[Finding]:
    """A finding unless the page's markup after the fragment comes through intact.

    ``tokens`` are those of ``<div>`` + fragment + ``</div>`` + a sentinel ``<p>``: an unclosed
    tag, quote, comment or raw-text element swallows the sentinel; a stray end tag closes the
    page's ``<div>`` early and leaves student markup after it. Formatting elements left open
    (``<b>``, ``<a>``) reopen after the ``</div>`` as browsers do; they are checked like the rest.
    """
    depth, wrapper_end = 0, None
    for i, token in enumerate(tokens):
        depth += {"StartTag": 1, "EndTag": -1}.get(token["type"], 0)
        if depth == 0:
            wrapper_end = i
            break
    if wrapper_end is None:
        return [_UNBALANCED]
    sentinels = 0
    for token in tokens[wrapper_end + 1:]:
        kind = token["type"]
        name = token.get("name", "").lower()
        if kind == "StartTag" and name == "p":
            classes = [v for (_, k), v in token.get("data", {}).items() if k == "class"]
            sentinels += classes == [f"s{nonce}"]
            if classes != [f"s{nonce}"]:
                return [_UNBALANCED]
        elif kind == "Characters" and token["data"].strip() not in ("", "end"):
            return [_UNBALANCED]
        elif kind in ("StartTag", "EmptyTag", "EndTag") and name not in _FORMATTING | {"p"}:
            return [_UNBALANCED]
        elif kind not in ("StartTag", "EndTag", "Characters", "SpaceCharacters"):
            return [_UNBALANCED]
    return [] if sentinels == 1 else [_UNBALANCED]


_UNBALANCED = Finding("unclosed or unbalanced markup", active=False)
#: Elements the HTML parser reopens after an end tag closed them (the "active formatting" list).
_FORMATTING = frozenset("a b big code em font i nobr s small strike strong tt u".split())


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def html_findings(fragment: str) -> list[Finding]:
    """What makes an HTML fragment unsafe to put into a page; empty when it is safe.

    The fragment is parsed as a browser would, inside the page's ``<div>``, with more markup after
    it, in a whole page (so that what it adds to ``<body>`` counts). Findings: elements outside
    :data:`ALLOWED_TAGS` that browsers know (``<script>``, ``<iframe>``, ``<svg>``, ...), custom
    elements, event handlers, URLs that are not relative, http(s), mailto or (images) raster
    ``data:``, ``data-*``/``srcdoc``/``is`` attributes, CSS with ``url()`` or ``expression``, TeX
    ``\\href`` to such URLs, and markup that does not close (it would swallow or close the page's
    own).
    """
    nonce = uuid.uuid4().hex
    tokens, found = _page_tokens(
        f'<div class="w{nonce}">{fragment}\n</div>\n<p class="s{nonce}">end</p>')
    text: list[str] = []
    in_style, verbatim = False, 0
    for token in tokens:
        kind, name = token["type"], token.get("name", "").lower()
        if kind in ("StartTag", "EmptyTag"):
            found += _element_findings(token)
            in_style = name == "style"
        verbatim += {"StartTag": 1, "EndTag": -1}.get(kind, 0) * (name in _NO_MATH)
        if kind == "EndTag":
            in_style = False
        elif kind == "Characters" and in_style:
            found += [f for f in [_css_finding(token["data"])] if f]
        elif kind in ("Characters", "SpaceCharacters"):
            text.append(" " if verbatim else token["data"])
    found += tex_findings("".join(text))
    found += _structure_findings(tokens, nonce)
    return _dedupe(found)


#: Elements whose text MathJax leaves alone (its ``skipTags``).
_NO_MATH = frozenset({"script", "noscript", "style", "textarea", "pre", "code"})


def tex_findings(tex: str) -> list[Finding]:
    """Findings for TeX that MathJax would turn into a link or a loader (``\\href``, ...)."""
    found = []
    pattern = r"\\(href|url|require)(?![A-Za-z])\s*(\{([^{}]*)\})?"
    for match in re.finditer(pattern, tex):
        command, url = match.group(1), match.group(3)
        if command == "require" or url is None:
            found.append(Finding(f"\\{command}"))
        elif finding := _url_finding(url):
            found.append(Finding(f"\\{command} with {finding.what}"))
    return _dedupe(found)


def _clean_tokens(tokens: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """The tokens less disallowed elements (their content too for scripts, styles, frames)."""
    skip = 0
    for token in tokens:
        kind = token["type"]
        if skip:
            skip += {"StartTag": 1, "EndTag": -1}.get(kind, 0)
            continue
        if kind in ("Comment", "Doctype"):
            continue
        if kind not in ("StartTag", "EmptyTag", "EndTag"):
            yield token
            continue
        name = token["name"].lower()
        if _tag_finding(name, token.get("namespace")):
            skip = int(kind == "StartTag" and (name in DROP_CONTENT_TAGS or
                                               token.get("namespace") not in (None, HTML_NS)))
            continue
        if kind != "EndTag":
            token = {**token, "data": {key: value for key, value in token["data"].items()
                                       if _attr_allowed(name, key[1].lower(), str(value))}}
        yield token


def _attr_allowed(tag: str, name: str, value: str) -> bool:
    if _attr_finding(tag, name, value):
        return False
    return name in GLOBAL_ATTRS or name.startswith("aria-") or name in TAG_ATTRS.get(tag, ())


def _clean_html(fragment: str) -> str:
    """``fragment`` re-serialised with only allowed elements and attributes."""
    serializer = html5lib_shim.HTMLSerializer(quote_attr_values="always", omit_optional_tags=False,
                                              escape_lt_in_attrs=True, resolve_entities=False,
                                              sanitize=False, alphabetical_attributes=False)
    return serializer.render(_clean_tokens(_tokens(fragment)))


def sanitize_html(fragment: str) -> tuple[str, list[Finding]]:
    """``fragment`` unchanged when safe, else cleaned (or escaped), and what was found."""
    found = html_findings(fragment)
    if not found:
        return fragment, []
    cleaned = _clean_html(fragment)
    if html_findings(cleaned):
        cleaned = html.escape(fragment)
    return cleaned, found


def svg_findings(svg: str) -> list[Finding]:
    """What makes an SVG image unsafe inline: scripts, handlers, foreign content, external refs."""
    tokens, found = _page_tokens(svg)
    for token in tokens:
        if token["type"] not in ("StartTag", "EmptyTag"):
            continue
        name, namespace = token["name"].lower(), token.get("namespace")
        if namespace != SVG_NS:
            found.append(Finding(f"<{name}> in SVG"))
        elif name not in SVG_TAGS and ":" not in name:
            found.append(Finding(f"<{name}> in SVG", active=name in ("script", "foreignobject")))
        for (_, attr), value in token.get("data", {}).items():
            attr = attr.lower()
            if attr.startswith("on"):
                found.append(Finding(f"{attr}= handler in SVG"))
            elif attr == "href" and not (value.startswith("#") or
                                         (name == "image" and IMAGE_DATA.match(value))):
                found.append(Finding(f"href to {_scheme(value) or 'another'} document in SVG"))
            elif attr == "style" and (finding := _css_finding(value)):
                found.append(finding)
    return _dedupe(found)


# --- Markdown -----------------------------------------------------------------------------

def _render_markdown(source: str, attachments: Mapping[str, Any] | None = None) -> str:
    """``source`` rendered as nbconvert's HTML templates render a markdown cell."""
    renderer = IPythonRenderer(escape=False, attachments=dict(attachments or {}))
    return strip_files_prefix(MarkdownWithMath(renderer=renderer).render(source))


def markdown_findings(source: str, attachments: Mapping[str, Any] | None = None) -> list[Finding]:
    """What makes markdown unsafe once rendered (see :func:`html_findings`); empty when safe."""
    try:
        rendered = _render_markdown(source, attachments)
    except Exception:  # noqa: BLE001 - a missing attachment, a bad attribute name, ...
        return [Finding("markdown that cannot be rendered", active=False)]
    return html_findings(rendered)


#: Above this many tags, a cell to rewrite is shown as plain text rather than escaped tag by tag.
MAX_TAGS = 500
_TAG_START = re.compile(r"<!--|<[!?]|<(/?)([A-Za-z][A-Za-z0-9:-]*)")


def _tag_end(source: str, start: int) -> int:
    """The index after the ``>`` that ends the tag opened before ``start`` (quotes respected)."""
    quote = None
    for i in range(start, len(source)):
        char = source[i]
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == ">":
            return i + 1
    return len(source)


def _unsafe_tag(source: str, match: re.Match[str]) -> bool:
    """Whether the raw HTML starting at ``match`` must be escaped."""
    if match.group(0) == "<!--":
        return "-->" not in source[match.end():]
    if match.group(2) is None:
        return True
    name = match.group(2).lower()
    if _tag_finding(name, None):
        return True
    if match.group(1):
        return False
    return _unsafe_start_tag(source[match.start():_tag_end(source, match.end())])


@functools.lru_cache(maxsize=1024)
def _unsafe_start_tag(tag: str) -> bool:
    return bool(html_findings(tag))


def _escape_tags(source: str) -> str | None:
    """``source`` with the ``<`` of each unsafe tag written as ``&lt;`` (shown, not parsed).

    The end tag matching an escaped start tag is escaped too. None when ``source`` has more than
    :data:`MAX_TAGS` tags (checking each would take too long).
    """
    matches = list(_TAG_START.finditer(source))
    if len(matches) > MAX_TAGS:
        return None
    starts, escaped = [], Counter[str]()
    for match in matches:
        name = (match.group(2) or "").lower()
        if match.group(1) and escaped[name] > 0:
            escaped[name] -= 1
            starts.append(match.start())
        elif _unsafe_tag(source, match):
            escaped[name] += not match.group(1)
            starts.append(match.start())
    pieces, pos = [], 0
    for start in starts:
        pieces += [source[pos:start], "&lt;"]
        pos = start + 1
    return "".join(pieces) + source[pos:]


def _as_plain_text(source: str) -> str:
    """``source`` in a fenced code block that nothing in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{PLAIN_NOTICE}\n\n{fence}\n{source}\n{fence}\n"


def sanitize_markdown(source: str,
                      attachments: Mapping[str, Any] | None = None) -> tuple[str, list[Finding]]:
    """``source`` unchanged when safe; else rewritten safe, and what was found.

    Rewritten: the offending tags escaped (so shown as text, the rest still formatted) when that
    is enough, else the whole source as plain text in a code block.
    """
    found = markdown_findings(source, attachments)
    if not found:
        return source, []
    escaped = _escape_tags(source)
    candidates = [f"{NOTICE}\n\n{escaped}"] if escaped is not None else []
    for candidate in [*candidates, _as_plain_text(source)]:
        if not markdown_findings(candidate, attachments):
            return candidate, found
    return REMOVED_NOTICE, found


# --- the preprocessor ---------------------------------------------------------------------

def _meta_value_ok(key: str, value: Any) -> bool:
    """Whether one image-metadata value renders inertly (nbconvert writes ``width=`` unquoted)."""
    if key in ("width", "height"):
        return (isinstance(value, int | float) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?(px|%)?", value) is not None)
    if key == "unconfined":
        return isinstance(value, bool)
    return isinstance(value, str) and (key == "alt" or value in ("light", "dark"))


def _clean_output_metadata(meta: Mapping[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """Output metadata with only image sizes, ``unconfined`` and ``alt`` kept."""
    found, kept = [], {}
    for key, value in meta.items():
        if key in RASTER_MIMES and isinstance(value, Mapping):
            inner, more = _clean_output_metadata(value)
            kept[key], found = inner, found + more
        elif key in IMAGE_META and _meta_value_ok(key, value):
            kept[key] = value
        elif key in ("width", "height"):
            found.append(Finding(f"output metadata {key}={str(value)[:20]!r}"))
        else:
            found.append(Finding(f"output metadata {key}", active=False))
    return kept, found


def _clean_data(mime: str, value: Any) -> tuple[Any, list[Finding]]:
    """One output MIME entry, cleaned, or None to drop it; and what was found."""
    if not isinstance(value, str):
        return None, [Finding(f"{mime} output", active=False)]
    if mime in KEPT_MIMES:
        return value, []
    if mime == "text/html":
        return sanitize_html(value)
    if mime in CHECKED_MIMES:
        found = CHECKED_MIMES[mime](value)
        return (None, found) if found else (value, [])
    return None, [Finding(f"{mime} output", active="javascript" in mime or "ecmascript" in mime)]


#: Output types rendered after a check; the output is dropped when the check finds anything.
CHECKED_MIMES: Mapping[str, Callable[[str], list[Finding]]] = {
    "text/markdown": markdown_findings, "image/svg+xml": svg_findings, "text/latex": tex_findings}


def _clean_output(output: NotebookNode) -> tuple[NotebookNode, list[Finding]]:
    """One output cleaned in place, or a note replacing it when nothing of it could stay; and
    what was found, each named with its MIME type."""
    found: list[Finding] = []
    if "execution_count" in output and not _is_count(output["execution_count"]):
        output["execution_count"] = None
        found.append(Finding("execution_count"))
    if output.get("output_type") not in ("display_data", "execute_result"):
        return output, found
    data = output.get("data", {})
    for mime in list(data):
        value, more = _clean_data(mime, data[mime])
        if value is None:
            del data[mime]
        else:
            data[mime] = value
        suffix = f" in {mime} output" if mime in CHECKED_MIMES or mime == "text/html" else ""
        found += [Finding(f.what + suffix, f.active) for f in more]
    metadata, more = _clean_output_metadata(output.get("metadata", {}))
    output["metadata"] = from_dict(metadata)
    if not data and found:
        output = from_dict({"output_type": "stream", "name": "stdout",
                            "text": "[autograder: output removed: it could not be shown safely]\n"})
    return output, found + more


def _is_count(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _clean_attachments(cell: NotebookNode) -> list[Finding]:
    """Keep raster images only; an attachment left empty becomes a transparent pixel."""
    found = []
    for name, bundle in list(cell.get("attachments", {}).items()):
        bundle = bundle if isinstance(bundle, Mapping) else {"": bundle}
        kept = {m: v for m, v in bundle.items() if m in RASTER_MIMES and isinstance(v, str)}
        found += [Finding(f"{m or 'malformed'} attachment", active=False)
                  for m in bundle if m not in kept]
        if kept != bundle:
            cell.attachments[name] = from_dict(kept or {"image/gif": PLACEHOLDER_GIF})
    return found


class SanitizeNotebook(NbGraderPreprocessor):
    """Rewrite a notebook in place so that rendering it as HTML runs nothing a student wrote.

    Markdown cells (and an nbgrader comment): unchanged when safe, else see
    :func:`sanitize_markdown`; attachments: raster images only. Raw cells and ``text/html``
    outputs: unsafe markup removed. Outputs keep ``text/plain``, PNG, JPEG, GIF, and checked
    ``text/html``, ``text/markdown``, ``image/svg+xml`` and ``text/latex``; everything else
    (JavaScript, widget views, other types) is dropped, and so is the notebook's widget state.
    Output metadata keeps image sizes only when they are numbers; execution counts are numbers.

    What could run code is listed in ``resources["sanitized"]`` (e.g. ``"cell 12 (q3): <script>
    removed"``, cells counted from 1) and in the notebook's ``metadata.autograder.sanitized``,
    which the written notebook keeps; the rest in ``resources["sanitized_quiet"]``.
    """

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any] | None = None):
        """Clean the notebook's metadata and every cell; record what was removed."""
        resources = {} if resources is None else resources
        resources.setdefault("sanitized", [])
        resources.setdefault("sanitized_quiet", [])
        if nb.metadata.pop("widgets", None) is not None:
            resources["sanitized_quiet"].append("notebook: widget state removed")
        nb, resources = super().preprocess(nb, resources)
        if resources["sanitized"]:
            record = nb.metadata.setdefault("autograder", {})
            old = list(record.get("sanitized", []))
            record["sanitized"] = list(dict.fromkeys(old + resources["sanitized"]))
        return nb, resources

    def preprocess_cell(self, cell: NotebookNode, resources: dict[str, Any], index: int):
        """Clean one cell and add what was found to ``resources``."""
        found = _clean_cell(cell)
        meta = cell.get("metadata", {}).get("nbgrader", {})
        label = f"cell {index + 1}" + (f" ({meta['grade_id']})" if meta.get("grade_id") else "")
        for finding in _dedupe(found):
            key = "sanitized" if finding.active else "sanitized_quiet"
            resources.setdefault(key, []).append(f"{label}: {finding.what} removed")
        return cell, resources


def _clean_cell(cell: NotebookNode) -> list[Finding]:
    """Clean one cell in place (see :class:`SanitizeNotebook`); what was found."""
    found: list[Finding] = []
    if cell.cell_type == "markdown":
        found += _clean_attachments(cell)
        cell.source, more = sanitize_markdown(cell.source, cell.get("attachments"))
        found += more
    elif cell.cell_type == "raw":
        cell.source, more = sanitize_html(cell.source)
        found += more
    elif cell.cell_type == "code":
        if not _is_count(cell.get("execution_count")):
            cell.execution_count = None
            found.append(Finding("execution_count"))
        outputs = []
        for output in cell.get("outputs", []):
            output, more = _clean_output(output)
            outputs.append(output)
            found += more
        cell.outputs = outputs
    nbgrader = cell.get("metadata", {}).get("nbgrader", {})
    if isinstance(nbgrader.get("comment"), str):
        nbgrader["comment"], more = sanitize_markdown(nbgrader["comment"])
        found += [Finding(f"{f.what} in comment", f.active) for f in more]
    return found


# --- grades.csv and names -----------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_FORMULA_START = tuple("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _escape_controls(text: str) -> str:
    """``text`` with control and bidi characters written as ``\\xNN`` / ``\\uNNNN``."""
    return "".join(ch.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(ch) == "Cc" or ch in _BIDI else ch for ch in text)


def one_line(value: object) -> str:
    """``value`` as one line of text: line breaks and tabs become spaces, other control and
    bidi-override characters are written as escapes (``\\x1b``, ``\\u202e``)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return _escape_controls(_LINE_BREAKS.sub(" ", text).replace("\t", " "))


def csv_cell(value: object) -> str:
    """``value`` as a ``grades.csv`` cell that no spreadsheet evaluates (see :func:`one_line`).

    Numbers (``-3``, ``2.5``, ``+1``, ``1e-3``) stay as they are; any other text starting with
    ``= + - @``, a tab or a carriage return (ignoring leading spaces, full-width forms included)
    gets a leading ``'``.
    """
    raw = "" if value is None else value if isinstance(value, str) else str(value)
    text = one_line(raw)
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return text
    if raw.startswith(_FORMULA_START) or stripped.startswith(_FORMULA_START):
        return "'" + text
    return text


_NAME_PUNCTUATION = frozenset(" -_.@+")


def safe_name(name: str) -> bool:
    """Whether a student folder or notebook file name can be used as it is.

    Allowed: 1 to 100 characters, each a Unicode letter (or combining mark), a decimal digit, a
    space or one of ``-_.@+``; not starting with ``.`` or ``-`` (hidden files, command-line
    options), no leading or trailing space. So no path separators, control characters,
    newlines or bidi overrides.
    """
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        return False
    if name[0] in ".-" or name != name.strip():
        return False
    return all(ch in _NAME_PUNCTUATION or unicodedata.category(ch)[0] in "LM"
               or unicodedata.category(ch) == "Nd" for ch in name)


def printable(name: object, limit: int = 100) -> str:
    """A one-line, quoted, repr-like form of ``name`` for reports (at most ``limit`` chars)."""
    text = name if isinstance(name, str) else str(name)
    shown = repr(text[:limit])
    return shown + ("..." if len(text) > limit else "")
