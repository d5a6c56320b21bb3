// Shared by the bundled apps: state kept by the phone (so `vphone state PKG` can read it) and an
// in-app page stack that the phone's Back key walks before leaving the app.
const VPhone = {
  stack: [],
  openMenu: null,

  // The app's saved state, or a copy of `defaults` when the phone has none.
  async load(defaults) {
    const saved = window.vphoneState ? await window.vphoneState('get') : null;
    return saved || JSON.parse(JSON.stringify(defaults || {}));
  },

  save(state) {
    if (window.vphoneState) window.vphoneState('set', state);
  },

  // Show the <section class="page"> with this id; remember the current one for Back.
  go(id) {
    const current = document.querySelector('.page.active');
    if (current) this.stack.push(current.id);
    this.show(id);
  },

  show(id) {
    for (const page of document.querySelectorAll('.page')) {
      page.classList.toggle('active', page.id === id);
    }
    window.scrollTo(0, 0);
    const hook = window.onPageShown;
    if (hook) hook(id);
  },

  // Back within the app: true when handled, false when the phone should leave the app.
  back() {
    if (this.closeMenu()) return true;
    if (!this.stack.length) return false;
    this.show(this.stack.pop());
    return true;
  },

  // The IME's Enter (KEYCODE_ENTER) in any of these fields presses `button`.
  submitOnEnter(fieldIds, button) {
    for (const id of fieldIds) {
      document.getElementById(id).addEventListener('keydown', (event) => {
        if (event.key === 'Enter') document.getElementById(button).click();
      });
    }
  },

  // A button that runs `onTap` when tapped and `onLongPress` when held (500 ms or more), as an
  // Android list row does; the long press replaces the tap its release would also send.
  pressable(attrs, onTap, onLongPress, ...children) {
    let downAt = 0;
    return this.el('button', {...attrs, onpointerdown: () => { downAt = Date.now(); },
                              onclick: () => (Date.now() - downAt >= 500 ? onLongPress : onTap)()},
                   ...children);
  },

  // A bottom sheet of actions over the page (a long press's context menu): `items` are
  // {id, label, run}; picking one, tapping outside or Back closes it.
  menu(id, title, items) {
    this.closeMenu();
    const sheet = this.el('div', {class: 'sheet', id},
      this.el('h2', {}, title),
      ...items.map((item) => this.el('button', {class: 'row', id: item.id, onclick: () => {
        this.closeMenu();
        item.run();
      }}, item.label)));
    this.openMenu = this.el('div', {class: 'scrim', onclick: (event) => {
      if (event.target === this.openMenu) this.closeMenu();
    }}, sheet);
    document.body.append(this.openMenu);
  },

  closeMenu() {
    if (!this.openMenu) return false;
    this.openMenu.remove();
    this.openMenu = null;
    return true;
  },

  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  },
};
window.vphoneBack = () => VPhone.back();
