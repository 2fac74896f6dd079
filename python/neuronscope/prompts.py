"""Prompts as versioned package data (``prompts/*.md``): a ``version:`` line, a ``system:`` line, a ``user:`` body."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from .errors import ConfigError


@dataclass(frozen=True)
class Prompt:
    name: str
    version: int
    system: str
    user: str

    def messages(self, **values: object) -> list[dict[str, str]]:
        """Chat messages with ``values`` filled into the user template (``str.format``)."""
        try:
            return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user.format(**values)}]
        except KeyError as e:
            raise ConfigError(f"prompt {self.name} v{self.version} needs a value for {e}") from None

    @property
    def tag(self) -> str:
        return f"{self.name}@v{self.version}"


@cache
def load_prompt(name: str) -> Prompt:
    """The prompt ``name`` from the package's prompts directory."""
    path = resources.files("neuronscope") / "prompts" / f"{name}.md"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no prompt named {name!r}") from None
    head, _, user = text.partition("\nuser: ")
    lines = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
    if "version" not in lines or "system" not in lines or not user:
        raise ConfigError(f"prompt {name} is malformed (needs version:, system: and user: parts)")
    return Prompt(name, int(lines["version"]), lines["system"], user.rstrip("\n"))


def conditions_doc() -> str:
    """The condition language as the prompts explain it."""
    return (resources.files("neuronscope") / "prompts" / "conditions.md").read_text(encoding="utf-8").strip()
