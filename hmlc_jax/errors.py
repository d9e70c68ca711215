"""The exception types main.py reports without a traceback.

`main.py` turns a `UserInputError` into one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""


class UserInputError(ValueError):
  """Bad input from the user: the message names the field or file and the fix."""


class NonFiniteError(RuntimeError):
  """Training produced a non-finite loss or state; nothing non-finite was saved.

  `main.py` reports it in one line (step, last good checkpoint) with exit status 1.
  """
