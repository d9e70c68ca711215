"""The one exception type for bad user input (config, data, flags).

`main.py` turns a `UserInputError` into one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""


class UserInputError(ValueError):
  """Bad input from the user: the message names the field or file and the fix."""
