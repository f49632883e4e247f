"""Test doubles shared by the engine and parts tests."""


class LoggedTimer:
    """Stands in for gradacc.timing.Timer: writes 'name<' on entry and '>name' on exit into a shared log."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def __enter__(self):
        self.log.append(f"{self.name}<")

    def __exit__(self, *exc):
        self.log.append(f">{self.name}")
        return False
