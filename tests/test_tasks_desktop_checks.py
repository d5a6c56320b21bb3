"""Desktop task checks that need no display: a question's answer, a file as an editor saved it."""

from __future__ import annotations

import subprocess

import pytest

from tasks.registry import get_task


@pytest.mark.parametrize("seed", range(5))
def test_a_line_count_is_read_from_the_answer_around_it(seed, tmp_path):
    task = get_task("desktop/terminal-count-lines", seed=seed)
    p = task.params
    task.populate(tmp_path)
    # The count the task's own solution reads off the terminal: real grep on the file it wrote.
    count = int(subprocess.run(["grep", "-c", "-w", p["word"], p["file"]], cwd=tmp_path,
                               capture_output=True, text=True, check=True).stdout)
    for answer in (f"{count}", f"{count}.", f"{count} lines",
                   f"{p['file']} has {count} lines with '{p['word']}'."):
        assert task.check(None, answer).success, answer
    for answer in (None, "", f"{count + 1}", f"{count} or {count + 1}", f"{count}.5",
                   f"-{count}", f"{count}0 lines"):
        assert not task.check(None, answer).success, answer


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("command", ["rm {file}", "sed -i '1d' {file}", "echo {word} >> {file}"])
def test_a_question_about_a_file_fails_when_the_file_was_changed(seed, command, tmp_path):
    task = get_task("desktop/terminal-count-lines", seed=seed)
    task.populate(tmp_path)
    right = str(task.count)
    assert task.check(None, right).success
    subprocess.run(command.format(**task.params), shell=True, cwd=tmp_path, check=True)
    score = task.check(None, right)
    assert not score.success and "changed" in score.reason, score


def saved(task, tmp_path, lines: list[str]) -> bool:
    """The task's check, with its file saved as ``lines`` (each ending with a newline)."""
    task.populate(tmp_path)
    task.path(task.params["file"]).write_text("".join(f"{line}\n" for line in lines),
                                              encoding="utf-8")
    return task.check(None, None).success


@pytest.mark.parametrize("seed", range(5))
def test_an_item_appended_after_a_blank_line_is_the_last_line(seed, tmp_path):
    """The list ends with a newline: Enter, then the item, leaves a blank line above it."""
    task = get_task("desktop/editor-append-line", seed=seed)
    items, new = task.params["items"], task.params["new"]
    assert saved(task, tmp_path, [*items, "", new])
    assert saved(task, tmp_path, [*items, new, ""])
    assert not saved(task, tmp_path, [*items, ""])
    assert not saved(task, tmp_path, [*items, new, new])
    assert not saved(task, tmp_path, [new, *items])


@pytest.mark.parametrize("seed", range(5))
def test_a_deleted_line_leaves_no_blank_line(seed, tmp_path):
    task = get_task("desktop/editor-delete-line", seed=seed)
    items, remove = task.params["items"], task.params["remove"]
    assert saved(task, tmp_path, [i for i in items if i != remove])
    assert not saved(task, tmp_path, ["" if i == remove else i for i in items])


def done_right(task, folder) -> str | None:
    """Leave the end state a right solution leaves in ``folder``; the answer it gives."""
    task.populate(folder)
    if task.name == "desktop/terminal-count-lines":
        return str(task.count)
    if task.name.startswith("desktop/terminal-"):
        text = task.expected() + "\n"
    elif task.name == "desktop/editor-write-save":
        text = task.params["text"] + "\n"
    else:
        text = "".join(f"{line}\n" for line in task.wanted())
    task.path(task.params["file"]).write_text(text, encoding="utf-8")
    return None


#: Changes nobody asked for, each run in the episode's folder.
UNASKED = ["echo 5 > count.txt", "cp {file} backup.txt", "mkdir junk", "ln -s {file} link.txt",
           "touch {file}.orig"]
#: Changes to the file the task seeded (where it seeds one).
TO_THE_SEEDED = ["chmod 600 {file}", "sed -i 's/$/\\r/' {file}", "rm {file}"]


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", ["desktop/terminal-write-file", "desktop/terminal-arithmetic",
                                  "desktop/terminal-count-lines", "desktop/editor-write-save",
                                  "desktop/editor-append-line", "desktop/editor-delete-line"])
def test_a_file_the_task_did_not_ask_for_fails_it(name, seed, tmp_path):
    """Copies, extra files and a seeded file changed on the way passed: each check read only
    the file its task names. The programs' own hidden files (settings, history) are no change."""
    task = get_task(name, seed=seed)
    commands = [*UNASKED, *(TO_THE_SEEDED if name == "desktop/terminal-count-lines" else [])]
    for command in commands:
        folder = tmp_path / str(commands.index(command))
        folder.mkdir()
        answer = done_right(task, folder)
        (folder / ".config" / "mousepad").mkdir(parents=True)
        (folder / ".bash_history").write_text("ls\n")
        assert task.check(None, answer).success, command
        subprocess.run(command.format(**task.params), shell=True, cwd=folder, check=True)
        score = task.check(None, answer)
        assert not score.success and "which the task did not ask for" in score.reason, command
