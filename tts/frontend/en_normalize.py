"""English text normalisation with the rules (and quirks) of GPT-SoVITS v2's English cleaner.

Numbers, ordinals, times, measurement units, currency, decimals, fractions and simple
arithmetic are spelled out in words; accents are stripped; every character other than
ASCII letters, space and ' . , ? ! - is deleted; runs of capitals are split into letters.
The spelling of numbers comes from `inflect` so that it matches the reference exactly.

Two departures from the reference, where it misreads: a digit run next to letters is read as a
word of its own ("ABC123" -> "A B C one hundred twenty-three", not "... Cone hundred ..."; "5kg"
-> "five kg"), and a clock time takes a following AM/PM ("5:30 PM" -> "five thirty p.m.", not
"five thirty a.m. P M").
"""
from __future__ import annotations

import re
import threading
import unicodedata

_lock = threading.Lock()
_engine = None

# Only these three replacements of the reference's table ever fire: its other keys are
# character classes that it escapes before matching, so they are taken literally.
_FULLWIDTH_END_MARKS = {"\u3002": ".", "\uff01": "!", "\uff1f": "?"}

_UNITS = {
    "m": ("meter", "meters"),
    "km": ("kilometer", "kilometers"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "ft": ("feet", "feet"),
    "L": ("liter", "liters"),
    "tbsp": ("tablespoon", "tablespoons"),
    "tsp": ("teaspoon", "teaspoons"),
    "h": ("hour", "hours"),
    "min": ("minute", "minutes"),
    "s": ("second", "seconds"),
    "°C": ("degree celsius", "degrees celsius"),
    "°F": ("degree fahrenheit", "degrees fahrenheit"),
}

_ORDINAL_DOT = re.compile(r"\b([0-9]+)\. ")
_DIGIT_GROUPS = re.compile(r"([0-9][0-9\,]+[0-9])")
# a clock time, with the a/p of a following "AM", "pm", "a.m." or "P.M." when there is one
_CLOCK = re.compile(r"\b([01]?[0-9]|2[0-3]):([0-5][0-9])(?: ?([AaPp])(?:[Mm]\b|\.[Mm]\.)|\b)")
_LETTER_DIGIT = re.compile(r"(?<=[A-Za-z])(?=[0-9])")
_DIGIT_LETTER = re.compile(r"(?<=[0-9])(?=[A-Za-z])(?!(?:st|nd|rd|th)\b)")  # not inside 1st, 2nd
_MEASURE = re.compile(r"\b([0-9]+(\.[0-9]+)?(m|km|km/h|ft|L|tbsp|tsp|h|min|s|°C|°F))\b")
_POUNDS_BEFORE = re.compile(r"£([0-9\.\,]*[0-9]+)")
_POUNDS_AFTER = re.compile(r"([0-9\.\,]*[0-9]+)£")
_DOLLARS_BEFORE = re.compile(r"\$([0-9\.\,]*[0-9]+)")
_DOLLARS_AFTER = re.compile(r"([(0-9\.\,]*[0-9]+)\$")
_DECIMAL = re.compile(r"([0-9]+\.\s*[0-9]+)")
_FRACTION = re.compile(r"([0-9]+/[0-9]+)")
_ORDINAL = re.compile(r"[0-9]+(st|nd|rd|th)")
_INTEGER = re.compile(r"[0-9]+")
_SUP = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_OPERAND = rf"((-?)((\d+)(\.\d+)?[{_SUP}]*)|(\.\d+[{_SUP}]*)|([A-Za-z][{_SUP}]*))"
_ARITHMETIC = re.compile(_OPERAND + r"\s+([\+\-\×÷=])\s+" + _OPERAND)
_OPERATORS = {"+": " plus ", "-": " minus ", "×": " times ", "÷": " divided by ", "=": " Equals "}
_NEGATIVE = re.compile(r"(?:^|\s+)(-)(\d+)")
_NOT_KEPT = re.compile(r"[^ A-Za-z'.,?!\-]")
_CAPITAL_INSIDE = re.compile(r"(?<!^)(?<![\s])([A-Z])")
_MAX_DIGITS = 36  # inflect names numbers up to 10**36 - 1
_LONG_NUMBER = re.compile(r"[0-9][0-9,.]{%d,}" % _MAX_DIGITS)
_PUNCT = "!?…,.-"
_REPEATED_PUNCT = re.compile(f"([{re.escape(_PUNCT)}\\s])([{re.escape(_PUNCT)}])+")


def _inflect():
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                import inflect

                _engine = inflect.engine()
    return _engine


def _words(num: int | str, **kw) -> str:
    """inflect's spelling; numbers too large for it are read digit by digit."""
    try:
        return _inflect().number_to_words(num, **kw)
    except Exception:  # inflect raises on numbers beyond its scale words
        return " ".join(_inflect().number_to_words(d) for d in str(num) if d.isdigit())


def _ordinal_dot(m: re.Match) -> str:
    return _inflect().ordinal(m.group(1)) + ", "


def _arithmetic(m: re.Match) -> str:
    return m.group(1) + _OPERATORS[m.group(8)] + m.group(9)


def _negative(m: re.Match) -> str:
    return ("negative " if m.group(1) else "") + m.group(2)


def _clock(m: re.Match) -> str:
    hours, minutes = int(m.group(1)), int(m.group(2))
    period = "a.m." if hours < 12 else "p.m."
    if m.group(3):  # written AM/PM wins over the reference's guess from the hour
        period = "a.m." if m.group(3) in "Aa" else "p.m."
    if hours > 12:
        hours -= 12
    if minutes == 0:
        return f"{_words(hours)} o'clock {period}"
    return f"{_words(hours)} {_words(minutes)} {period}"


def _measure(m: re.Match) -> str:
    unit = m.group(3)
    amount = int(m.group(1).replace(unit, "").replace(".", ""))
    plural = not (m.group(2) is None and amount == 1)
    return m.group(1).replace(unit, " " + _UNITS[unit][int(plural)])


def _to_int(digits: str) -> int:
    """int() of a matched amount; stray '(' or ',' (which crash the reference) are ignored."""
    digits = re.sub(r"[^0-9]", "", digits)
    return int(digits) if digits else 0


def _money(m: re.Match, major: tuple[str, str], minor: tuple[str, str]) -> str:
    text = m.group(1)
    parts = text.split(".")
    if len(parts) > 2:
        return f"{text} {major[1]}"
    big = _to_int(parts[0])
    small = _to_int(parts[1].ljust(2, "0")) if len(parts) > 1 else 0
    big_s = f"{big} {major[0] if big == 1 else major[1]}"
    small_s = f"{small} {minor[0] if small == 1 else minor[1]}"
    if big and small:
        return f"{big_s} and {small_s}"
    if big:
        return big_s
    if small:
        return small_s
    return f"zero {major[1]}"


def _pounds(m: re.Match) -> str:
    return _money(m, ("pound", "pounds"), ("penny", "pence"))


def _dollars(m: re.Match) -> str:
    return _money(m, ("dollar", "dollars"), ("cent", "cents"))


def _decimal(m: re.Match) -> str:
    whole, frac = m.group(1).split(".")
    return whole + " point " + " ".join(frac)


def _fraction(m: re.Match) -> str:
    num, den = (int(x) for x in m.group(0).split("/"))
    top = _words(num)
    if den == 2:
        return f"{top} {'half' if num == 1 else 'halves'}"
    if den == 1:
        return top
    bottom = _inflect().ordinal(_words(den))
    return f"{top} {bottom}{'s' if num > 1 else ''}"


def _ordinal(m: re.Match) -> str:
    return _words(m.group(0))


def _integer(m: re.Match) -> str:
    num = int(m.group(0))
    if 1000 < num < 3000:
        if num == 2000:
            return "two thousand"
        if 2000 < num < 2010:
            return "two thousand " + _words(num % 100)
        if num % 100 == 0:
            return _words(num // 100) + " hundred"
        return _words(num, andword="", zero="oh", group=2).replace(", ", " ")
    return _words(num, andword="")


def _digit_by_digit(m: re.Match) -> str:
    run = m.group(0)
    return " ".join(run) if sum(c.isdigit() for c in run) > _MAX_DIGITS else run


def expand(text: str) -> str:
    """The reference's number/symbol expansion and character filter (its `normalize`).

    Numbers longer than inflect can name (which make the reference fail) are read digit by digit.
    """
    text = _LONG_NUMBER.sub(_digit_by_digit, text)
    text = _LETTER_DIGIT.sub(" ", text)
    text = _ORDINAL_DOT.sub(_ordinal_dot, text)
    while _ARITHMETIC.search(text):
        text = _ARITHMETIC.sub(_arithmetic, text)
    text = _NEGATIVE.sub(_negative, text)
    text = _DIGIT_GROUPS.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _CLOCK.sub(_clock, text)
    text = _MEASURE.sub(_measure, text)
    text = _DIGIT_LETTER.sub(" ", text)
    for pattern, fn in ((_POUNDS_BEFORE, _pounds), (_POUNDS_AFTER, _pounds),
                        (_DOLLARS_BEFORE, _dollars), (_DOLLARS_AFTER, _dollars),
                        (_DECIMAL, _decimal), (_FRACTION, _fraction),
                        (_ORDINAL, _ordinal), (_INTEGER, _integer)):
        text = pattern.sub(fn, text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    text = text.replace("%", " percent")
    text = _NOT_KEPT.sub("", text)
    text = re.sub(r"(?i)i\.e\.", "that is", text)
    text = re.sub(r"(?i)e\.g\.", "for example", text)
    return _CAPITAL_INSIDE.sub(r" \1", text)


def normalize(text: str) -> str:
    """Full English normalisation as GPT-SoVITS v2's `english.text_normalize`."""
    text = "".join(_FULLWIDTH_END_MARKS.get(c, c) for c in text)
    text = expand(text)
    return _REPEATED_PUNCT.sub(r"\1", text)
