"""The miniwob suite: every task page of the ``miniwob`` package in the browser env. The page
gives the instruction and MiniWoB's own reward gives the score (page.py); solutions.py holds the
tasks with a scripted solution, pages.py registers the rest."""
