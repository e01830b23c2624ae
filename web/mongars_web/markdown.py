"""Markdown to safe HTML for the page without JavaScript: markdown-it-py renders (raw HTML in
the text stays text), Pygments highlights fenced code, and nh3 (the Ammonia sanitiser) keeps
only the tags and attributes below, whatever the model wrote."""

from __future__ import annotations

import html

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

ALLOWED_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "span": {"class"}, "code": {"class"}}
URL_SCHEMES = {"http", "https", "mailto"}


def _highlight(code: str, language: str, _attrs: str) -> str:
    try:
        lexer = get_lexer_by_name(language) if language else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return f'<pre><code class="hljs">{html.escape(code)}</code></pre>'
    # Pygments' short class names are styled by the same CSS as the page's highlight.js output.
    body = highlight(code, lexer, HtmlFormatter(nowrap=True))
    return f'<pre><code class="hljs language-{html.escape(language)}">{body}</code></pre>'


_renderer = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
_renderer.enable("table").enable("strikethrough")


def render(text: str) -> str:
    """Safe HTML for ``text`` (Markdown written by a person or a model)."""
    return nh3.clean(
        _renderer.render(text),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )
