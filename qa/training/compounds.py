"""Questions as people type them: "the number of troops" becomes "troop numbers".

SQuAD's questions were written by careful writers looking at their paragraph: "What was the number of troops
sent?". People asking a chat assistant write the same thing as a noun compound, "troop numbers", "school
name", "army size". A cross-encoder that only ever saw the "the N of M" form reads "troop numbers" poorly: on
the bundled article "What did CNN report about the number of troops?" puts the fifty-troops sentence first
by 2.7, and "... about troop numbers?" puts it second. This is the principle that English says one thing in
both forms, made into training data: a share of the training questions that hold "the N of M", where M ends
its noun phrase, is asked in the compound form instead (`compounded`), with the same answer.

The rewrite is deliberately plain. M is one word followed by the end of the question, a comma, or a word
that starts a new phrase ("in", "that", "did", ...), so "the number of US troops" (M is two words) is left
alone. A lowercase M loses a plural "s" ("troops" → "troop"); a capitalised one is a name and is kept as it
is ("the population of Paris" → "the Paris population"). A relative clause or a coordination after M ("the
name of the man who ...") may belong to M, so those are left alone too. Half the rewrites keep "the" ("the
school name"), half drop it as in a heading or a search, a quantity's head then plural ("troop numbers").
"""

from __future__ import annotations

import random
import re

#: Heads that do not form a compound with what follows "of" ("the rest of the army", "the most of it").
_NOT_HEADS = {"rest", "most", "one", "some", "all", "each", "both", "any", "none", "many", "much", "few", "part",
              "majority", "minority", "half", "first", "last", "same", "other", "top", "bottom", "middle", "kind",
              "sort", "lot", "use", "city", "state", "university", "house", "duke", "king", "queen", "battle",
              "book", "treaty", "church", "bank", "republic", "department", "institute", "school", "museum", "west",
              "east", "north", "south", "center", "centre", "edge", "side", "beginning", "start", "end", "outset",
              "time", "day", "month", "year", "age", "period", "century", "height", "depth"}
#: Heads of a quantity, made plural when the compound drops "the", as in a heading: "troop numbers".
_QUANTITIES = {"number", "amount", "size", "level", "rate", "count", "figure", "price", "cost", "total", "share",
               "percentage", "proportion", "quantity", "value", "volume", "weight", "length", "speed"}
#: Words that start a new phrase, so the one before them ends the "of" phrase.
_PHRASE_STARTS = ("in|on|at|for|by|from|to|did|does|do|was|were|is|are|has|have|had|can|could|will|would|during|"
                  "after|before|with|under|over|between|per|since|according|as|than")
_OF_PHRASE = re.compile(
    rf"\bthe (?P<head>[a-z]{{3,}}) of (?:the |a |an )?(?P<modifier>[A-Za-z][a-z]{{2,}})"
    rf"(?=\s*(?:[?,.]|$)|\s+(?:{_PHRASE_STARTS})\b)")
_NOT_MODIFIERS = {"the", "a", "an", "his", "her", "its", "their", "this", "that", "these", "those", "which", "what",
                  "who", "whom", "whose", "it", "them", "him", "one", "ones", "each", "all", "both", "more", "less",
                  "most", "least", "many", "much"}


def compounded(question: str, rng: random.Random) -> str | None:
    """`question` with its first "the N of M" phrase asked as a noun compound ("the M N" or "M Ns"), or None
    when it has none that qualifies (see the module docstring)."""
    for match in _OF_PHRASE.finditer(question):
        head, modifier = match.group("head"), match.group("modifier")
        if head in _NOT_HEADS or modifier.lower() in _NOT_MODIFIERS:
            continue
        if modifier.islower():
            modifier = singular(modifier)
        if rng.random() < 0.5:
            phrase = f"the {modifier} {head}"
        else:
            phrase = f"{modifier} {plural(head) if head in _QUANTITIES else head}"
        return question[:match.start()] + phrase + question[match.end():]
    return None


def singular(word: str) -> str:
    """A plain English singular of a lowercase noun ("troops" → "troop", "countries" → "country")."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ss", "us", "is", "ics", "news")) or not word.endswith("s") or len(word) < 4:
        return word
    return word[:-1]


def plural(word: str) -> str:
    """A plain English plural ("number" → "numbers", "city" → "cities", "tax" → "taxes")."""
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"
