"""The one domain error of the lab.

Every expected failure (bad configuration, a missing model, bad input) raises
LabError with a sentence meant for the user; the CLI edge prints it and exits
non-zero without a traceback.
"""


class LabError(Exception):
    """An expected failure, explained in one sentence for the user."""

    exit_code = 1
