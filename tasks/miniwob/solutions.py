"""The MiniWoB++ tasks with a scripted solution (tagged ``scripted``).

Each reads the page's instruction and its DOM to decide *which* element to use, then acts on it
only through pixel actions (tasks/miniwob/act.py). The other pages of the package are registered
without a solution by tasks/miniwob/pages.py.
"""

from __future__ import annotations

import re
from typing import Iterator

from core.actions import Hotkey
from envs.base import Env, EnvError
from tasks.base import SolutionStep
from tasks.miniwob.act import (
    click,
    key,
    onto_screen,
    quoted,
    reveal,
    scrolled_out,
    text_is,
    texts,
    type_text,
    visible,
    wait_for,
)
from tasks.miniwob.page import ScriptedTask, on_page


def _tags(*extra: str) -> frozenset[str]:
    return ScriptedTask.tags | frozenset(extra)


def _match(pattern: str, utterance: str) -> re.Match:
    found = re.fullmatch(pattern, utterance)
    if found is None:
        raise EnvError(f"unexpected instruction {utterance!r}")
    return found


def _fill(env: Env, selector: str, text: str, what: str) -> Iterator[SolutionStep]:
    yield click(env, selector, f"Select the {what} field.")
    yield type_text(text, f"Type {text!r} into the {what} field.")


# -- clicking ---------------------------------------------------------------------------------
class ClickButton(ScriptedTask):
    name = "miniwob/click-button"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        target = quoted(utterance)
        yield click(env, text_is("#area button", target), f"Click the {target!r} button.")


class ClickButtonSequence(ScriptedTask):
    name = "miniwob/click-button-sequence"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        yield click(env, text_is("#area button", "ONE"), "Click button ONE first.")
        yield click(env, text_is("#area button", "TWO"), "Then click button TWO.")


class ClickLink(ScriptedTask):
    name = "miniwob/click-link"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        target = quoted(utterance)
        yield click(env, text_is("#area span.alink", target), f"Click the link {target!r}.")


class ClickDialog(ScriptedTask):
    name = "miniwob/click-dialog"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        yield click(env, ".ui-dialog-titlebar-close", "Close the dialog with its x.")


class ClickDialog2(ScriptedTask):
    name = "miniwob/click-dialog-2"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        label = quoted(utterance)
        target = ".ui-dialog-titlebar-close" if label == "x" \
            else text_is(".ui-dialog-buttonset button", label)
        yield click(env, target, f"Click the dialog's {label!r} button.")


class ClickTest(ScriptedTask):
    name = "miniwob/click-test"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        yield click(env, "#subbtn", "Click the button.")


class ClickTest2(ScriptedTask):
    name = "miniwob/click-test-2"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        label = _match(r"Click button (\w+)\.", utterance).group(1)
        yield click(env, text_is("#area button", label), f"Click button {label}.")


class UnicodeTest(ClickButton):
    name = "miniwob/unicode-test"


class ClickWidget(ScriptedTask):
    name = "miniwob/click-widget"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        kind = quoted(utterance)
        yield click(env, f'#area [data-type="{kind}"]', f"Click a {kind} widget.")


class ClickTab(ScriptedTask):
    name = "miniwob/click-tab"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        number = _match(r"Click on Tab #(\d+)\.", utterance).group(1)
        yield click(env, text_is("#area .ui-tabs-anchor", f"Tab #{number}"),
                    f"Click tab #{number}.")


class ClickTab2(ScriptedTask):
    name = "miniwob/click-tab-2"
    tags = _tags("click", "medium")

    def steps(self, env, utterance):
        target = quoted(utterance)
        link = text_is("#area .ui-tabs-panel span.alink", target)
        if not visible(env, link):
            tab = on_panel(env, link)
            yield click(env, f'#area .ui-tabs-anchor[href="#{tab}"]',
                        "The link is on another tab: open it.")
        yield click(env, link, f"Click the link {target!r}.")


def on_panel(env: Env, link: str) -> str:
    """The id of the tab panel that holds ``link`` (read from the DOM, hidden or not)."""
    return on_page(env, "finding the link's tab", lambda page: page.locator(link).first.evaluate(
        "(e) => e.closest('.ui-tabs-panel').id"))


class ClickCollapsible(ScriptedTask):
    name = "miniwob/click-collapsible"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        yield click(env, "#area h3", "Expand the section.")
        wait_for(env, "#subbtn")
        yield click(env, "#subbtn", "Click Submit.")


class NavigateTree(ScriptedTask):
    name = "miniwob/navigate-tree"
    tags = _tags("click", "medium")

    def steps(self, env, utterance):
        target = quoted(utterance)
        item = text_is("#tree span", target)
        for _ in range(self.max_steps - 1):  # the budget, less the last click
            if visible(env, item):
                break
            # The outermost closed folder on the way to the target: open it.
            folder = on_page(env, "reading the tree", lambda page: page.locator(item).first
                             .evaluate("""(e) => { let closed = null;
                                 for (let li = e.parentElement.parentElement.closest('li'); li;
                                      li = li.parentElement.closest('li'))
                                   if (li.classList.contains('expandable')) closed = li;
                                 return closed.querySelector(':scope > span').textContent; }"""))
            yield click(env, text_is("#tree li.expandable > div.hitarea + span", folder),
                        f"Open the folder {folder!r}.")
        yield click(env, item, f"Click {target!r}.")


# -- choosing ---------------------------------------------------------------------------------
class ClickCheckboxes(ScriptedTask):
    name = "miniwob/click-checkboxes"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        wanted = _match(r"Select (.*) and click Submit\.", utterance).group(1)
        names = [] if wanted == "nothing" else wanted.split(", ")
        for index, label in enumerate(texts(env, "#boxes label")):
            if label in names:
                yield click(env, f"#ch{index}", f"Tick {label!r}.")
        yield click(env, "#subbtn", "Click Submit.")


class ClickOption(ScriptedTask):
    name = "miniwob/click-option"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        wanted = _match(r"Select (.*) and click Submit\.", utterance).group(1)
        labels = texts(env, "#boxes label")
        if wanted not in labels:
            raise EnvError(f"{wanted!r} is not among {labels}")
        yield click(env, f"#ch{labels.index(wanted)}", f"Choose {wanted!r}.")
        yield click(env, "#subbtn", "Click Submit.")


class ChooseList(ScriptedTask):
    name = "miniwob/choose-list"
    tags = _tags("click", "typing", "easy")

    def steps(self, env, utterance):
        wanted = _match(r"Select (.*) from the list and click Submit\.", utterance).group(1)
        yield click(env, "#options", "Open the list.")
        # A native list: typing an option's name picks it, Enter closes the list.
        yield type_text(wanted, f"Pick {wanted!r} by typing its name.")
        yield key("enter", "Close the list on the chosen option.")
        yield click(env, "#area button", "Click Submit.")


class UseAutocomplete(ScriptedTask):
    name = "miniwob/use-autocomplete"
    tags = _tags("typing", "click", "medium")

    def steps(self, env, utterance):
        start = quoted(utterance)
        end = quoted(utterance, 1) if utterance.count('"') >= 4 else ""
        yield from _fill(env, "#tags", start, "tags")
        menu = "ul.ui-autocomplete li"
        wait_for(env, menu)
        choices = texts(env, menu)
        fitting = [i for i, c in enumerate(choices) if c.startswith(start) and c.endswith(end)]
        if not fitting:
            raise EnvError(f"no suggestion among {choices} starts with {start!r} and ends with "
                           f"{end!r}")
        yield click(env, f"{menu} >> nth={fitting[0]}",
                    f"Choose the suggestion {choices[fitting[0]]!r}.")
        yield click(env, "#subbtn", "Click Submit.")


# -- typing -----------------------------------------------------------------------------------
class EnterText(ScriptedTask):
    name = "miniwob/enter-text"
    tags = _tags("typing", "easy")

    def text(self, utterance: str) -> str:
        return quoted(utterance)

    def steps(self, env, utterance):
        yield from _fill(env, "#tt", self.text(utterance), "text")
        yield click(env, "#subbtn", "Click Submit.")


class EnterText2(EnterText):
    name = "miniwob/enter-text-2"

    def text(self, utterance: str) -> str:
        text = quoted(utterance)
        if "lower case" in utterance:
            return text.lower()
        return text.upper() if "upper case" in utterance else text


class EnterTextDynamic(EnterText):
    name = "miniwob/enter-text-dynamic"


class FocusText(ScriptedTask):
    name = "miniwob/focus-text"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        yield click(env, "#tt", "Click into the textbox.")


class FocusText2(ScriptedTask):
    name = "miniwob/focus-text-2"
    tags = _tags("click", "easy")

    def steps(self, env, utterance):
        nth = int(_match(r"Focus into the (\d+)\w\w input textbox\.", utterance).group(1))
        yield click(env, f"#area input >> nth={nth - 1}", f"Click into textbox {nth}.")


class EnterPassword(ScriptedTask):
    name = "miniwob/enter-password"
    tags = _tags("typing", "easy")

    def steps(self, env, utterance):
        password = quoted(utterance)
        yield from _fill(env, "#password", password, "password")
        yield from _fill(env, "#verify", password, "verify password")
        yield click(env, "#subbtn", "Click Submit.")


class LoginUser(ScriptedTask):
    name = "miniwob/login-user"
    tags = _tags("typing", "easy")

    def steps(self, env, utterance):
        yield from _fill(env, "#username", quoted(utterance), "username")
        yield from _fill(env, "#password", quoted(utterance, 1), "password")
        yield click(env, "#subbtn", "Click Login.")


# -- the email inbox --------------------------------------------------------------------------
class _EmailInbox(ScriptedTask):
    """The email-inbox pages: open the sender's email, then star, delete, reply or forward."""

    tags = _tags("email", "click", "scroll", "medium")
    max_steps = 20

    def steps(self, env, utterance):
        sender = _match(r"Find the email by (.+?) and .*", utterance).group(1)
        row = text_is("#main .email-thread .email-sender", sender)
        yield from reveal(env, row, handle="#main-header h2")
        yield click(env, row, f"Open the email from {sender}.")
        if "star icon" in utterance:
            yield click(env, "#email .email-actions .star", "Star it.")
        elif "trash icon" in utterance:
            yield click(env, "#email .email-actions .trash", "Delete it.")
        elif "reply to them" in utterance:
            yield click(env, "#email .email-reply", "Reply.")
            yield from _fill(env, "#reply-text", quoted(utterance), "reply")
            yield click(env, "#send-reply", "Send the reply.")
        elif (forward := re.search(r"forward that email to (.+)\.$", utterance)) is not None:
            yield click(env, "#email .email-forward", "Forward it.")
            yield from _fill(env, ".forward-sender", forward.group(1), "to")
            yield click(env, "#send-forward", "Send it.")
        else:
            raise EnvError(f"unexpected instruction {utterance!r}")


class EmailInbox(_EmailInbox):
    name = "miniwob/email-inbox"


class EmailInboxDelete(_EmailInbox):
    name = "miniwob/email-inbox-delete"


class EmailInboxImportant(_EmailInbox):
    name = "miniwob/email-inbox-important"


class EmailInboxForward(_EmailInbox):
    name = "miniwob/email-inbox-forward"


class EmailInboxReply(_EmailInbox):
    name = "miniwob/email-inbox-reply"


class EmailInboxNoscroll(_EmailInbox):
    name = "miniwob/email-inbox-noscroll"


class EmailInboxStarReply(_EmailInbox):
    name = "miniwob/email-inbox-star-reply"


# -- booking a flight -------------------------------------------------------------------------
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]


class BookFlight(ScriptedTask):
    name = "miniwob/book-flight"
    tags = _tags("typing", "click", "scroll", "hard")
    max_steps = 40

    def steps(self, env, utterance):
        goal, origin, destination, month, day, year = _match(
            r"Book the (cheapest|shortest) one-way flight from: (.+) to: (.+) "
            r"on (\d\d)/(\d\d)/(\d{4})\.", utterance).groups()
        for field, place in (("#flight-from", origin), ("#flight-to", destination)):
            yield from _fill(env, field, place, field[1:])
            yield from _pick_suggestion(env, field, place)
        yield click(env, "#datepicker", "Open the date picker.")
        wait_for(env, "#ui-datepicker-div")
        target = (int(year), int(month))
        for _ in range(24):
            shown = (int(texts(env, ".ui-datepicker-year")[0]),
                     _MONTHS.index(texts(env, ".ui-datepicker-month")[0]) + 1)
            if shown == target:
                break
            yield click(env, ".ui-datepicker-prev" if shown > target else ".ui-datepicker-next",
                        "Go to the flight's month.")
        yield click(env, text_is(f'td[data-month="{int(month) - 1}"][data-year="{year}"] a',
                                 str(int(day))), f"Pick day {int(day)}.")
        yield click(env, "#search", "Search.")
        wait_for(env, ".flight")
        key_attr = "data-price" if goal == "cheapest" else "data-duration"
        values = on_page(env, "reading the flights", lambda page: page.eval_on_selector_all(
            ".flight", f"""flights => flights.map(f => parseInt(
                f.querySelector('[{key_attr}]').getAttribute('{key_attr}')))"""))
        best = values.index(min(values)) + 1
        button = f".flight:nth-child({best + 1}) .flight-price"  # child 1 is the results header
        yield from reveal(env, button, handle=".flight-summary")
        yield click(env, button, f"Book the {goal} flight.")


def _pick_suggestion(env: Env, field: str, place: str) -> Iterator[SolutionStep]:
    """The click on the autocomplete entry for ``place`` ("City, ST (CODE)": the instruction
    names the city or the code; an entry hidden in the menu's scroll is typed whole first)."""
    # jQuery UI searches 300 ms after the last key: wait for the menu of the whole text (a slow
    # machine can show one for a prefix first).
    menu_id, entries = on_page(env, "reading the suggestions", lambda page: (
        page.wait_for_function("""(f) => { const box = $(f);
            return box.autocomplete('instance').term === box.val()
                && box.autocomplete('widget').is(':visible'); }""", arg=field),
        page.evaluate("""(f) => { const menu = $(f).autocomplete('widget');
            return [menu.attr('id'), menu.find('li').map((_, e) => e.textContent).get()]; }""",
                      field))[1])
    wanted = [e for e in entries
              if e == place or e.startswith(place + " (") or e.endswith(f"({place})")]
    if not wanted:
        raise EnvError(f"{place!r} is not among the suggestions {entries}")
    entry = f"#{menu_id} li >> nth={entries.index(wanted[0])}"
    if scrolled_out(env, entry) and wanted[0] != place:
        # The menu is 80 pixels high and scrolls by itself: the entry typed whole is the one
        # suggestion left, at its top.
        yield SolutionStep(Hotkey(keys=["ctrl", "a"]), "Select the text typed so far.")
        yield type_text(wanted[0], f"Type the suggestion {wanted[0]!r} whole.")
        yield from _pick_suggestion(env, field, wanted[0])
        return
    yield from onto_screen(env, entry)
    yield click(env, entry, f"Choose {wanted[0]!r}.")
