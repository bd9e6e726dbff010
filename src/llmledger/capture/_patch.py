"""Replacing attributes of SDK classes, and putting them back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PATCHED_MARK", "Patch"]

#: Set on every replacement function, so a second instrumentation never wraps twice.
PATCHED_MARK = "__llmledger_original__"


@dataclass(slots=True)
class Patch:
    """One attribute of one class, with the original value and its replacement."""

    owner: Any
    name: str
    original: Any
    replacement: Any
    own: bool = True
    applied: bool = False

    @classmethod
    def of(cls, owner: Any, name: str, make: Any) -> Patch | None:
        """A patch of ``owner.name`` with ``make(original)``; None when absent or already patched.

        The original is read from the class's own ``__dict__`` when it is defined
        there, so putting it back restores exactly what was there.
        """
        own = name in vars(owner)
        original = vars(owner)[name] if own else getattr(owner, name, None)
        if original is None or getattr(original, PATCHED_MARK, None) is not None:
            return None
        replacement = make(original)
        setattr(replacement, PATCHED_MARK, original)
        return cls(owner, name, original, replacement, own)

    def apply(self) -> None:
        """Put the replacement in place."""
        setattr(self.owner, self.name, self.replacement)
        self.applied = True

    def undo(self) -> None:
        """Put the original back, unless someone else replaced ours since."""
        if self.applied and vars(self.owner).get(self.name) is self.replacement:
            if self.own:
                setattr(self.owner, self.name, self.original)
            else:
                delattr(self.owner, self.name)
        self.applied = False
