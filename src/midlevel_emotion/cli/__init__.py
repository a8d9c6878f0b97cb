"""The ``midlevel-emotion`` command: arguments, the commands, what they print and draw."""
