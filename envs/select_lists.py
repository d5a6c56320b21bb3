"""A ``<select>``'s options, shown in the page where a screenshot sees them.

Headless chromium draws an open ``<select>``'s option list outside the page, so a screenshot never
shows it: a model that clicks a drop-down sees it closed and has to choose blind. This script
(added to every page of the browser env) opens it in the page instead: a press on a drop-down
shows its options as a list box just under it, on top of the page. A click on an option, or
Enter on the one the arrow keys or typing reached, picks it (the page gets ``input`` and
``change``, as from the native list); Escape, Tab or a click elsewhere closes the list as it was.
The keys on a closed drop-down are chromium's own.
"""

SHOW_SELECT_OPTIONS = """(() => {
  const MARK = 'data-vlagent-options';
  const open = (select) => {
    const list = document.createElement('select');
    list.setAttribute(MARK, '');
    list.size = Math.max(2, Math.min(select.options.length, 10));
    // Its groups too: their labels show, and a disabled group's options stay disabled.
    for (const child of select.children) list.appendChild(child.cloneNode(true));
    list.selectedIndex = select.selectedIndex;
    let done = false;
    const close = (pick) => {
      if (done) return;
      done = true;
      list.remove();
      select.focus();
      if (pick && list.selectedIndex >= 0 && list.selectedIndex !== select.selectedIndex) {
        select.selectedIndex = list.selectedIndex;
        select.dispatchEvent(new Event('input', {bubbles: true}));
        select.dispatchEvent(new Event('change', {bubbles: true}));
      }
    };
    list.addEventListener('click', () => close(true));
    list.addEventListener('keydown', (e) => {
      // Not the space bar: typing an option's name ("French Guiana") goes through it.
      if (e.key === 'Enter') { e.preventDefault(); close(true); }
      else if (e.key === 'Escape' || e.key === 'Tab') { e.preventDefault(); close(false); }
    });
    list.addEventListener('blur', () => close(false));
    // In the top layer, over everything and placed on the viewport whatever its ancestors'
    // transforms; inside the drop-down's dialog, since a modal one makes the rest inert.
    const box = select.getBoundingClientRect();
    list.popover = 'manual';
    list.style.cssText = `position: fixed; inset: auto; margin: 0; ` +
      `font: ${getComputedStyle(select).font};`;
    (dialogOf(select) ?? document.documentElement).appendChild(list);
    list.showPopover();
    // Lengths set on it are scaled by the page's CSS zoom, the box's are on the screen already.
    const zoom = list.currentCSSZoom || 1;
    list.style.minWidth = `${box.width / zoom}px`;
    // Under the drop-down where it fits, else above it, as chromium places its own list.
    const height = list.getBoundingClientRect().height;
    const top = box.bottom + height > innerHeight && box.top - height >= 0 ? box.top - height
                                                                           : box.bottom;
    list.style.left = `${box.left / zoom}px`;
    list.style.top = `${top / zoom}px`;
    list.focus();
  };
  // The dialog a node is in, as it is drawn: across shadow roots, and through the slot a
  // component's own dialog puts it in.
  const dialogOf = (node) => {
    for (let n = node; n; n = n.assignedSlot || n.parentNode || n.host) {
      if (n.localName === 'dialog') return n;
    }
    return null;
  };
  document.addEventListener('mousedown', (e) => {
    // The element pressed, inside a shadow root too (e.target is its host there).
    const pressed = e.composedPath()[0];
    const select = pressed instanceof Element ? pressed.closest('select') : null;
    if (!select || e.button !== 0 || select.multiple || select.size > 1 || select.disabled ||
        select.hasAttribute(MARK)) return;
    e.preventDefault();  // no native list, which no screenshot would show
    select.focus();
    open(select);
  }, true);
})();"""
