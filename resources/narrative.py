"""The narrative div (https://hl7.org/fhir/R4/narrative.html#xhtml): well-formed XHTML whose
root is a `div` in the XHTML namespace. Checked on write (so every stored narrative can be
written in XML) and used as it is when a resource is written as XML."""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from lxml import etree

XHTML_NS = "http://www.w3.org/1999/xhtml"
_DIV_START = re.compile(r"\s*<div(?=[\s/>])")
_DECLARATION = re.compile(r"<!(?:DOCTYPE|ENTITY)")
_local = threading.local()


def _parser() -> etree.XMLParser:
    """One lxml parser per thread: no entities, no DTD, no network."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                 huge_tree=False)
        _local.parser = parser
    return parser


@lru_cache(maxsize=2048)
def narrative_xml(div: str) -> str:
    """The div as XML to embed in a FHIR XML document: the string itself when it is a
    well-formed XHTML div; a div with no namespace at all gets the XHTML namespace declared.
    ValueError (saying what is wrong) otherwise."""
    if _DIV_START.match(div) is None:
        raise ValueError("the narrative must be an XHTML <div> element")
    if _DECLARATION.search(div):
        raise ValueError("the narrative may not declare a DOCTYPE or entities")
    try:
        root = etree.fromstring(div.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"the narrative is not well-formed XHTML: {exc}") from exc
    if root.tag == "{" + XHTML_NS + "}div":
        return div.strip()
    if root.tag == "div" and root.prefix is None:
        return _DIV_START.sub(f'<div xmlns="{XHTML_NS}"', div.strip(), count=1)
    raise ValueError(f"the narrative root must be an XHTML div, not <{root.tag}>")
