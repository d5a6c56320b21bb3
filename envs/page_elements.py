"""What element a point of a browser page holds (or which one has the focus), and the text a
person reads on it, looked for through open shadow roots and into frames, cross-origin ones
included: what the safety gate judges a press or a typed text by (``BrowserEnv.element_at``,
``focused_element``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envs.base import ElementInfo

# The element a click at a point hits (or the focused one) in one frame's document, looked for
# inside open shadow roots too (the document alone answers with their host). The point is in CSS
# pixels of that frame's viewport; null looks for the focused element. The body or nothing: null.
_FIND_ELEMENT = """(point) => {
  let el = point ? document.elementFromPoint(point[0], point[1]) : document.activeElement;
  for (let depth = 0; el && el.shadowRoot && depth < 64; depth++) {
    const root = el.shadowRoot;
    const inner = point ? root.elementFromPoint(point[0], point[1]) : root.activeElement;
    if (!inner || inner === el || inner.getRootNode() !== root) break;
    el = inner;
  }
  if (!el || el === document.body || el === document.documentElement) return null;
  return el;
}"""
# That element described by the text a person reads on it: a control's own label, or the closest
# button or link around it (climbing out of shadow roots and slots). A frame's owner (iframe,
# frame, object, embed) is not described unless ``plain``: its content box is returned instead
# (in CSS pixels of this frame's viewport, and how much a transform scales it), so the lookup can
# go on inside the frame.
_DESCRIBE_ELEMENT = """(el, plain) => {
  const html = el.namespaceURI === 'http://www.w3.org/1999/xhtml';
  if (!plain && html && ['iframe', 'frame', 'object', 'embed'].includes(el.localName)) {
    const rect = el.getBoundingClientRect(), style = getComputedStyle(el);
    const px = (name) => parseFloat(style[name]) || 0;
    const sx = (el.offsetWidth && rect.width / el.offsetWidth) || 1;
    const sy = (el.offsetHeight && rect.height / el.offsetHeight) || 1;
    return {frame: el.localName, scale: [sx, sy],
      origin: [rect.left + (el.clientLeft + px('paddingLeft')) * sx,
               rect.top + (el.clientTop + px('paddingTop')) * sy],
      size: [el.clientWidth - px('paddingLeft') - px('paddingRight'),
             el.clientHeight - px('paddingTop') - px('paddingBottom')]};
  }
  const up = (n) => {
    if (n.assignedSlot) return n.assignedSlot;
    if (n.parentElement) return n.parentElement;
    const root = n.getRootNode();
    return root instanceof ShadowRoot ? root.host : null;
  };
  // (An SVG link's href may be xlink:href: any namespace's.)
  const SELECTOR = 'button, a[*|href], [role=button], [role=link], [role=menuitem], [role=tab], '
    + '[role=option], [role=checkbox], [role=radio], [role=switch], label, input, textarea, '
    + 'select';
  const ancestors = [];
  for (let n = el; n; n = up(n)) ancestors.push(n);
  // Else, where the page shows the point as clickable (a pointer cursor), the container that
  // script makes so (a row with an onclick, or where that cursor starts) is what a press on its
  // icon presses. A dialog's text (no pointer) in a backdrop that closes on a click is not, nor
  // is a page whose body takes every click to hand it on.
  const pointer = (n) => n && getComputedStyle(n).cursor === 'pointer';
  const container = (n, i) => !['body', 'html'].includes(n.localName)
    && (n.hasAttribute('onclick') || (pointer(n) && !pointer(ancestors[i + 1])));
  let target = ancestors.find((n) => n.matches(SELECTOR))
    || (pointer(el) && ancestors.find(container)) || el;
  // A press on a label presses (or focuses) the control it names: judged as that control,
  // whose names hold the label's text.
  if (target instanceof HTMLLabelElement && target.control) target = target.control;
  // innerText leaves out what a shadow root shows: read the composed tree where there is one.
  const SKIP = ['script', 'style', 'template', 'noscript'];
  const composed = (n) => {
    if (n.nodeType === Node.TEXT_NODE) return n.data;
    if (n.nodeType !== Node.ELEMENT_NODE || SKIP.includes(n.localName)) return '';
    let kids = n.shadowRoot ? n.shadowRoot.childNodes : n.childNodes;
    if (n.localName === 'slot' && n.assignedNodes().length) kids = n.assignedNodes({flatten: true});
    return Array.from(kids, composed).join(' ');
  };
  const hasShadow = (n) => n.shadowRoot
    || Array.from(n.querySelectorAll('*')).some((e) => e.shadowRoot);
  // An SVG element has no innerText: the text it draws, as a person reads it (each text a word
  // apart; no style sheet, description or part not displayed), in its first 1,000 elements.
  const NOT_DRAWN = ['style', 'script', 'desc', 'metadata', 'title', 'defs', 'symbol',
                     'clipPath', 'mask', 'pattern', 'marker', 'filter', 'linearGradient',
                     'radialGradient'];
  const drawn = (n) => {
    let elements = 0;
    const read = (node) => {
      if (node.nodeType === Node.TEXT_NODE) return node.data;
      if (node.nodeType !== Node.ELEMENT_NODE || NOT_DRAWN.includes(node.localName)
          || ++elements > 1000 || getComputedStyle(node).display === 'none') return '';
      // The pieces of one text ("De" and a bold "lete") join as drawn; texts, and a piece
      // placed on a line of its own (its own x or y), a word apart.
      const apart = ['text', 'tspan', 'textPath'].includes(node.localName) ? '' : ' ';
      const placed = (c) => c.localName === 'tspan' && (c.hasAttribute('x') || c.hasAttribute('y'));
      return Array.from(node.childNodes, (c) => (placed(c) ? ' ' : '') + (c.innerText ?? read(c)))
        .join(apart);
    };
    return read(n);
  };
  const shown = (n) => (hasShadow(n) ? composed(n) : n.innerText ?? drawn(n))
    .replace(/\\s+/g, ' ');
  // What CSS writes into it (::before, ::after, as content: "Delete") shows as text too, and
  // innerText leaves it out: its text with that content in place ("De" before "lete" reads
  // "Delete"), where it has any. Read in its first 1,000 elements: a button has far fewer, and
  // a whole page's 20,000 would cost 0.1 s a press for text that is cut at 500 characters.
  const generated = (n) => {
    let elements = 0, found = false;
    const pseudo = (e, where) => {
      const strings = Array.from(getComputedStyle(e, where).content.matchAll(
        /"((?:[^"\\\\]|\\\\.)*)"/g), (m) => m[1].replace(/\\\\(.)/g, '$1')).join('');
      found ||= strings !== '';
      return strings;
    };
    const read = (node) => {
      if (node.nodeType === Node.TEXT_NODE) return node.data;
      if (node.nodeType !== Node.ELEMENT_NODE || SKIP.includes(node.localName)
          || ++elements > 1000) return '';
      return pseudo(node, '::before') + Array.from(node.childNodes, read).join('')
        + pseudo(node, '::after');
    };
    const text = read(n);
    return found ? text.replace(/\\s+/g, ' ') : '';
  };
  // A text field takes typed text; other inputs (a submit, an image, a checkbox) are pressed.
  const PRESSED = ['button', 'submit', 'reset', 'image', 'checkbox', 'radio', 'file', 'color',
                   'range', 'hidden'];
  // (A read-only one is pressed, not typed into; so is a button or link inside an editable
  // region or a page in designMode.)
  const input = target.matches('input');
  const textual = target.matches('textarea') || (input && !PRESSED.includes(target.type));
  const field = (textual && !target.readOnly)
    || (!target.matches(SELECTOR) && el.isContentEditable === true);
  // Every name it goes by (its accessible names, its caption, an icon's alt or title), so an
  // icon button reads as its label does ("Delete account" on a bin). A text input or area goes
  // by its names and placeholder, never by what is in it (a read-only one's too): no press is
  // judged by that, and a secret typed there and reshaped by the page ("4111 1111 ...") would
  // be quoted in the record. A button input's caption is its value.
  const root = target.getRootNode();
  const named = (target.getAttribute('aria-labelledby') || '').split(/\\s+/).filter(Boolean)
    .map((id) => (root.getElementById ? root.getElementById(id) : document.getElementById(id)))
    .filter(Boolean).map(shown);
  const labels = Array.from(target.labels || [], shown);
  const own = [...named, target.getAttribute('aria-label'), ...labels];
  // An icon's name: an image's alt, an aria-label inside, an SVG's <title> (a sprite's too,
  // through its <use>).
  const sprite = (use) => {
    const ref = use.href && use.href.baseVal;
    const found = ref && ref.startsWith('#') && use.getRootNode().getElementById(ref.slice(1));
    const title = found && found.querySelector('title');
    return title ? title.textContent : '';
  };
  const iconName = (n) => (n.localName === 'title' ? n.textContent
    : n.localName === 'use' ? sprite(n)
    : n.getAttribute('alt') || (n === target ? '' : n.getAttribute('aria-label')));
  const caption = input && ['button', 'submit', 'reset'].includes(target.type) ? target.value : '';
  const parts = field || textual
    ? [target.placeholder, ...own]
    : [...own, shown(target), generated(target), caption,
       ...[target, ...target.querySelectorAll('img, area, input[type=image], [aria-label], '
                                              + 'title, use')].map(iconName),
       target.getAttribute('title')];
  const text = [...new Set(parts.filter(Boolean).map((t) => String(t).trim()).filter(Boolean))];
  const held = textual && !field ? String(target.value || '').slice(0, 500) : '';
  return {text: text.join(' ').slice(0, 500), password: target.type === 'password', field, held};
}"""
# The button that Enter on a focused input presses (HTML's implicit submission): an input that
# Enter does not press itself (a one-line field, and a checkbox, radio, range or color input,
# which chromium submits from too) submits its form through the form's first submit button in
# tree order, an image input included (which form.elements leaves out), one outside the form
# that names it with form= too. That button, or null when Enter submits through none.
_SUBMITTER = """(el) => {
  const ITSELF = ['button', 'submit', 'reset', 'image', 'file', 'hidden'];
  if (!(el instanceof HTMLInputElement) || !el.form || ITSELF.includes(el.type)) return null;
  const buttons = el.form.getRootNode().querySelectorAll('button, input[type=submit], '
    + 'input[type=image]');
  return Array.from(buttons).find((b) => b.form === el.form
    && (b.type === 'submit' || b.type === 'image')) || null;
}"""
#: Frames inside frames that an element lookup follows; one deeper is not inspected (opaque).
MAX_FRAME_DEPTH = 8
#: What the lookup says of an element it cannot look at: a frame whose document it cannot read.
#: The safety gate treats pressing or typing there as sensitive.
OPAQUE = ElementInfo(text="", opaque=True)


def _as_element(handle: Any) -> ElementInfo:
    """A frame's owner described as the element it is, not by the document it holds."""
    plain = handle.evaluate(_DESCRIBE_ELEMENT, True)
    return ElementInfo(text=plain["text"], password=plain["password"], field=plain["field"],
                       held=plain["held"])


def element_in(frame: Any, point: list[float] | None, browser_alive: Callable[[], bool],
               depth: int = 0) -> ElementInfo | None:
    """The element at ``point`` (CSS pixels of ``frame``'s viewport), or the focused one
    (``point`` None), in ``frame`` and the frames inside it: a point on an iframe (or a
    frame, or an object or embed holding a document) goes on inside its document, at the
    point translated to that frame's viewport, as does the focus of a focused iframe.
    Playwright reaches cross-origin frames too. A frame it cannot read is ``OPAQUE``; a
    Playwright error while the browser is not ``browser_alive()`` is raised."""
    from playwright.sync_api import Error as PlaywrightError

    handle = frame.evaluate_handle(_FIND_ELEMENT, point).as_element()
    if handle is None:
        return None
    try:
        found = handle.evaluate(_DESCRIBE_ELEMENT, False)
        if "frame" not in found:
            text = found["text"]
            # Enter in the focused field presses its form's button ("Pay now"): judged too,
            # by every name the button goes by, as a click on it would be.
            button = handle.evaluate_handle(_SUBMITTER).as_element() if point is None \
                else None
            if button is not None:
                label = button.evaluate(_DESCRIBE_ELEMENT, True)["text"] or "Submit"
                text = f"{text or 'a field'} (Enter submits: {label[:200]})"
            return ElementInfo(text=text, password=found["password"], field=found["field"],
                               held=found["held"])
        inner = point
        if point is not None:
            (left, top), (sx, sy) = found["origin"], found["scale"]
            inner = [(point[0] - left) / sx, (point[1] - top) / sy]
            width, height = found["size"]
            if not (0 <= inner[0] < width and 0 <= inner[1] < height):
                return _as_element(handle)  # its border or padding: the press stays out
        try:
            child = frame_of(frame, handle)
            if child is None and found["frame"] in ("object", "embed"):
                return _as_element(handle)  # an image or a plugin: no document inside
            if child is None or depth >= MAX_FRAME_DEPTH:
                return OPAQUE
            return element_in(child, inner, browser_alive, depth + 1)
        except PlaywrightError:
            # The frame went away or refused us mid-lookup; a dead browser is an error.
            if not browser_alive():
                raise
            return OPAQUE
    finally:
        handle.dispose()


def frame_of(frame: Any, owner: Any) -> Any:
    """The frame whose owner element in ``frame`` is ``owner``, or None. Playwright's
    ``content_frame`` knows iframes and frames; an object's or embed's document is found
    among ``frame``'s children by its owner."""
    child = owner.content_frame()
    if child is not None:
        return child
    for candidate in frame.child_frames:
        element = candidate.frame_element()
        try:
            if owner.evaluate("(el, other) => el === other", element):
                return candidate
        finally:
            element.dispose()
    return None
