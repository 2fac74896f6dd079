"""Explanations as data (modes of executable conditions), their compiler and their files."""

from .conditions import ConditionEvaluator
from .files import read_explanations, write_explanations
from .model import (
    MAX_OFFSET,
    SCHEMA_VERSION,
    AllOf,
    Condition,
    Explanation,
    Mode,
    NextTokenIn,
    Not,
    Position,
    PrecedingRegex,
    PrevTokenIn,
    TokenIn,
    TokenRegex,
    condition_from_dict,
    normalise,
)
from .vocab import Vocab

__all__ = ["MAX_OFFSET", "SCHEMA_VERSION", "AllOf", "Condition", "ConditionEvaluator", "Explanation", "Mode",
           "NextTokenIn", "Not", "Position", "PrecedingRegex", "PrevTokenIn", "TokenIn", "TokenRegex", "Vocab",
           "condition_from_dict", "normalise", "read_explanations", "write_explanations"]
