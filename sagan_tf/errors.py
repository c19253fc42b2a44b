"""Errors that mean "the user asked for something that cannot work".

`./run.sh` prints their message as one sentence and exits with status 2,
without a traceback. Everything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
  """Bad input: the message says what was wrong (with the value or file) and what to do."""
