"""Chinese text normalisation compatible with GPT-SoVITS v2 (`chinese2.text_normalize`).

Numbers, dates, times, phone numbers, units, arithmetic and symbols become Chinese words;
punctuation is mapped onto the small set the phone table knows and everything else is
removed. Released GPT-SoVITS models were trained on text normalised exactly this way,
so the rules (and their oddities: "30-60分钟" reads as a subtraction, "-2.5" as
"负二零点五", every Latin "m"/"s" turns into 米/秒) are kept on purpose.

Departures, where the reference misreads a number's unit or drops a full-width symbol: after a
digit, "mm" reads 毫米 (not 米米) and "km/h" 千米每小时 (not 千米每); full-width ％ ． ＋ ＝ ／
become ASCII with the letters and digits (１５％ -> 百分之十五, not 十五); a run of hyphens is a
dash, dropped as "——" is (the reference reads "---" 减减减).

Rules run per sentence in a fixed order; see `_RULES`.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

_DATA = Path(__file__).parent / "data"

DIGITS = "零一二三四五六七八九"
_UNITS = ((8, "亿"), (4, "万"), (3, "千"), (2, "百"), (1, "十"))

# Punctuation symbols the phone table has (v1 and v2 share them).
PUNCTUATION = "!?…,.-"

# ---------------------------------------------------------------- number words


def digits_to_words(s: str, alt_one: bool = False) -> str:
    """Read digit by digit: "2025" -> "二零二五" (alt_one: 一 -> 幺, as in phone numbers)."""
    out = "".join(DIGITS[int(c)] for c in s)
    return out.replace("一", "幺") if alt_one else out


def _spell(s: str, use_zero: bool = True) -> list[str]:
    stripped = s.lstrip("0")
    if not stripped:
        return []
    if len(stripped) == 1:
        lead = ["零"] if use_zero and len(stripped) < len(s) else []
        return lead + [DIGITS[int(stripped)]]
    power, unit = next((p, u) for p, u in _UNITS if p < len(stripped))
    return _spell(s[:-power]) + [unit] + _spell(s[-power:])


def cardinal(s: str) -> str:
    """Read an integer string as a quantity: "1280" -> "一千二百八十", "10" -> "十"."""
    if not s:
        return ""
    s = s.lstrip("0")
    if not s:
        return DIGITS[0]
    words = _spell(s)
    if len(words) >= 2 and words[0] == "一" and words[1] == "十":
        words = words[1:]
    return "".join(words)


def number(s: str) -> str:
    """Read "12", "0.035" or ".5" (at most one point). A trailing zero decimal keeps one zero."""
    integer, _, decimal = s.partition(".")
    out = cardinal(integer)
    decimal = decimal.rstrip("0") + "0" if decimal.endswith("0") else decimal
    if decimal:
        out = (out or "零") + "点" + digits_to_words(decimal)
    return out


# ---------------------------------------------------------------- rules

_D = "[0-9]"
_NUM = rf"(-?)({_D}+(?:\.{_D}+)?)"  # sign, number


def _date(m: re.Match) -> str:
    year, month, day, day_unit = m.group("y"), m.group("m"), m.group("d"), m.group("du")
    out = digits_to_words(year) + "年"
    if month:
        out += cardinal(month) + "月"
    if day:
        out += cardinal(day) + day_unit
    return out


RE_DATE = re.compile(
    rf"(?P<y>{_D}{{4}}|{_D}{{2}})年(?:(?P<m>0?[1-9]|1[0-2])月)?"
    rf"(?:(?P<d>0?[1-9]|[12][0-9]|30|31)(?P<du>[日号]))?"
)
RE_DATE2 = re.compile(rf"({_D}{{4}})([- /.])(0[1-9]|1[012])\2(0[1-9]|[12][0-9]|3[01])")


def _date2(m: re.Match) -> str:
    return f"{digits_to_words(m.group(1))}年{cardinal(m.group(3))}月{cardinal(m.group(4))}日"


_CLOCK = r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9]))?"
RE_TIME = re.compile(_CLOCK)
RE_TIME_RANGE = re.compile(_CLOCK + "[~-]" + _CLOCK)


def _clock_part(num: str) -> str:
    return ("零" if num.startswith("0") else "") + number(num.lstrip("0"))


def _clock(hour: str, minute: str, second: str | None, half_if: str) -> str:
    out = number(hour) + "点"
    if minute.lstrip("0"):
        # The reference tests the *first* clock's minute for "半" in ranges too.
        out += "半" if int(half_if) == 30 else _clock_part(minute) + "分"
    if second and second.lstrip("0"):
        out += _clock_part(second) + "秒"
    return out


def _time(m: re.Match) -> str:
    g = m.groups()
    out = _clock(g[0], g[1], g[2], g[1])
    if len(g) > 3:
        out += "至" + _clock(g[3], g[4], g[5], g[1])
    return out


_RANGE_UNITS = r"(?:%|°C|℃|度|摄氏度|cm2|cm²|cm3|cm³|cm|db|ds|kg|km|m2|m²|m³|m3|ml|m|mm|s)"
_NUM_OR_FRAC = rf"(?:-?{_D}+(?:\.{_D}+)?|\.{_D}+)"
RE_TO_RANGE = re.compile(rf"{_NUM_OR_FRAC}{_RANGE_UNITS}~{_NUM_OR_FRAC}{_RANGE_UNITS}")

RE_TEMPERATURE = re.compile(_NUM + r"(°C|℃|度|摄氏度)")


def _temperature(m: re.Match) -> str:
    # Every unit, 摄氏度 included, reads "度" (the reference compares the wrong group).
    return ("零下" if m.group(1) else "") + number(m.group(2)) + "度"


# Plain substring replacement, in this order ("mm" is never reached: "m" comes first).
MEASURES = (
    ("cm2", "平方厘米"), ("cm²", "平方厘米"), ("cm3", "立方厘米"), ("cm³", "立方厘米"),
    ("cm", "厘米"), ("db", "分贝"), ("ds", "毫秒"), ("kg", "千克"), ("km", "千米"),
    ("m2", "平方米"), ("m²", "平方米"), ("m³", "立方米"), ("m3", "立方米"), ("ml", "毫升"),
    ("m", "米"), ("mm", "毫米"), ("s", "秒"),
)


RE_UNIT_AFTER_DIGIT = re.compile(rf"(?<={_D})(km/h|mm)")
UNIT_AFTER_DIGIT = {"km/h": "千米每小时", "mm": "毫米"}


def _measures(text: str) -> str:
    text = RE_UNIT_AFTER_DIGIT.sub(lambda m: UNIT_AFTER_DIGIT[m.group(1)], text)
    for key, word in MEASURES:
        text = text.replace(key, word)
    return text


_POW = "⁰¹²³⁴⁵⁶⁷⁸⁹ˣʸⁿ"
_OPERAND = rf"(?:-?{_D}+(?:\.{_D}+)?[{_POW}]*|\.{_D}+[{_POW}]*|[A-Za-z][{_POW}]*)"
RE_ASMD = re.compile(rf"({_OPERAND})([+\-×÷=])({_OPERAND})")
_OPS = {"+": "加", "-": "减", "×": "乘", "÷": "除", "=": "等于"}
RE_POWER = re.compile(f"[{_POW}]+")
_POW_PLAIN = dict(zip(_POW, "0123456789xyn"))


def _asmd_all(text: str) -> str:
    while RE_ASMD.search(text):
        text = RE_ASMD.sub(lambda m: m.group(1) + _OPS[m.group(2)] + m.group(3), text)
    return text


RE_FRAC = re.compile(rf"(-?)({_D}+)/({_D}+)")
RE_PERCENT = re.compile(_NUM + "%")
RE_MOBILE = re.compile(rf"(?<![0-9])((\+?86 ?)?1([38]{_D}|5[0-35-9]|7[678]|9[89]){_D}{{8}})(?![0-9])")
RE_TELEPHONE = re.compile(rf"(?<![0-9])((0(10|2[1-3]|[3-9]{_D}{{2}})-?)?[1-9]{_D}{{6,7}})(?![0-9])")
RE_UNIFORM_NUMBER = re.compile(rf"(400)(-)?{_D}{{3}}(-)?{_D}{{4}}")


def _mobile(m: re.Match) -> str:
    return "，".join(digits_to_words(p, alt_one=True) for p in m.group(0).strip("+").split())


def _telephone(m: re.Match) -> str:
    return "，".join(digits_to_words(p, alt_one=True) for p in m.group(0).split("-"))


_RANGE_GUARD = r"0-9+\-×÷="
RE_RANGE = re.compile(rf"(?<![{_RANGE_GUARD}])(-?{_D}+(?:\.{_D}+)?)[-~](-?{_D}+(?:\.{_D}+)?)(?![{_RANGE_GUARD}])")
RE_NEGATIVE_INT = re.compile(rf"-({_D}+)")
RE_VERSION = re.compile(rf"{_D}+\.{_D}+(?:\.{_D}+)?(?:\.{_D}+)+")
RE_DECIMAL = re.compile(rf"(-?)({_D}+\.{_D}+)|\.({_D}+)")
RE_NUMBER = re.compile(rf"(-?)({_D}+(?:\.{_D}+)?)|\.({_D}+)")
RE_DEFAULT_NUM = re.compile(rf"{_D}{{3,}}")


def _signed_number(m: re.Match) -> str:
    if m.group(3):  # ".5": the reference reads a bare decimal without its sign
        return number("." + m.group(3))
    return ("负" if m.group(1) else "") + number(m.group(2))


def _range(m: re.Match) -> str:
    return RE_NUMBER.sub(_signed_number, m.group(1)) + "到" + RE_NUMBER.sub(_signed_number, m.group(2))


def _version(m: re.Match) -> str:
    return "".join("点" if c == "." else number(c) for c in m.group(0))


@lru_cache(maxsize=1)
def _quantifier_regex() -> re.Pattern:
    # Measure words that make "2" read 两; only whether one follows matters, not which.
    words = (
        "处 台 架 枚 趟 幅 平 方 堵 间 床 株 批 项 例 列 篇 栋 注 亩 封 艘 把 目 套 段 人 所 朵 匹 张 座 回 场 尾 条 个 首 阙 阵 网 炮 顶 丘 "
        "棵 只 支 袭 辆 挑 担 颗 壳 窠 曲 墙 群 腔 砣 客 贯 扎 捆 刀 令 打 手 罗 坡 山 岭 江 溪 钟 队 单 双 对 出 口 头 脚 板 跳 枝 件 贴 "
        "针 线 管 名 位 身 堂 课 本 页 家 户 层 丝 毫 厘 分 钱 两 斤 铢 石 钧 锱 忽 千克 毫克 微克 公分 寸 尺 丈 里 寻 常 铺 程 "
        "千米 分米 厘米 毫米 微米 米 撮 勺 合 升 斗 盘 碗 碟 叠 桶 笼 盆 盒 杯 斛 锅 簋 篮 罐 瓶 壶 卮 盏 箩 箱 煲 啖 袋 钵 年 月 日 季 "
        "刻 时 周 天 秒 小时 旬 纪 岁 世 更 夜 春 夏 秋 冬 代 伏 辈 丸 泡 粒 幢 堆 根 道 面 片 块 元 亿 千万 百万 万 千 百 美元 十吨 吨 角 毛"
    ).split()
    alternation = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    return re.compile(rf"({_D}+)([多余几+])?({alternation})")


def _quantified(m: re.Match) -> str:
    n = number(m.group(1))
    more = "多" if m.group(2) == "+" else (m.group(2) or "")
    return ("两" if n == "二" else n) + more + m.group(3)


_SYMBOL_WORDS = (
    ("/", "每"), ("①", "一"), ("②", "二"), ("③", "三"), ("④", "四"), ("⑤", "五"), ("⑥", "六"),
    ("⑦", "七"), ("⑧", "八"), ("⑨", "九"), ("⑩", "十"), ("α", "阿尔法"), ("β", "贝塔"),
    ("γ", "伽玛"), ("Γ", "伽玛"), ("δ", "德尔塔"), ("Δ", "德尔塔"), ("ε", "艾普西龙"), ("ζ", "捷塔"),
    ("η", "依塔"), ("θ", "西塔"), ("Θ", "西塔"), ("ι", "艾欧塔"), ("κ", "喀帕"), ("λ", "拉姆达"),
    ("Λ", "拉姆达"), ("μ", "缪"), ("ν", "拗"), ("ξ", "克西"), ("Ξ", "克西"), ("ο", "欧米克伦"),
    ("π", "派"), ("Π", "派"), ("ρ", "肉"), ("ς", "西格玛"), ("Σ", "西格玛"), ("σ", "西格玛"),
    ("τ", "套"), ("υ", "宇普西龙"), ("φ", "服艾"), ("Φ", "服艾"), ("χ", "器"), ("ψ", "普赛"),
    ("Ψ", "普赛"), ("ω", "欧米伽"), ("Ω", "欧米伽"),
    ("+", "加"), ("-", "减"), ("×", "乘"), ("÷", "除"), ("=", "等"),
)
RE_BRACKETS = re.compile(r"[—《》【】<=>{}()（）#&@“”^_|\\-]")


def _symbols_to_words(text: str) -> str:
    for sym, word in _SYMBOL_WORDS:
        text = text.replace(sym, word)
    return RE_BRACKETS.sub("", text)


def _sub(pattern: re.Pattern, repl: Callable[[re.Match], str] | str) -> Callable[[str], str]:
    return lambda text: pattern.sub(repl, text)


RE_DASH = re.compile(r"-{2,}")  # "--", "---": a dash (dropped like "——"), not minus signs (减减减)

_RULES: tuple[Callable[[str], str], ...] = (
    _sub(RE_DASH, ""),
    _sub(RE_DATE, _date),
    _sub(RE_DATE2, _date2),
    _sub(RE_TIME_RANGE, _time),  # ranges before single times
    _sub(RE_TIME, _time),
    _sub(RE_TO_RANGE, lambda m: m.group(0).replace("~", "至")),
    _sub(RE_TEMPERATURE, _temperature),
    _measures,
    _asmd_all,
    _sub(RE_POWER, lambda m: "的" + "".join(_POW_PLAIN[c] for c in m.group(0)) + "次方"),
    _sub(RE_FRAC, lambda m: ("负" if m.group(1) else "") + number(m.group(3)) + "分之" + number(m.group(2))),
    _sub(RE_PERCENT, lambda m: ("负" if m.group(1) else "") + "百分之" + number(m.group(2))),
    _sub(RE_MOBILE, _mobile),
    _sub(RE_TELEPHONE, _telephone),
    _sub(RE_UNIFORM_NUMBER, _telephone),
    _sub(RE_RANGE, _range),
    _sub(RE_NEGATIVE_INT, lambda m: "负" + number(m.group(1))),
    _sub(RE_VERSION, _version),
    _sub(RE_DECIMAL, _signed_number),
    lambda text: _quantifier_regex().sub(_quantified, text),
    _sub(RE_DEFAULT_NUM, lambda m: digits_to_words(m.group(0), alt_one=True)),
    _sub(RE_NUMBER, _signed_number),
    _symbols_to_words,
)

# ---------------------------------------------------------------- characters and punctuation


@lru_cache(maxsize=1)
def _t2s_table() -> dict[int, str]:
    table: dict[int, str] = {}
    for line in (_DATA / "zh_t2s.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            trad, simp = line.split("\t")
            table[ord(trad)] = simp
    return table


_FULLWIDTH = {c + 0xFEE0: c for c in range(0x21, 0x7F) if chr(c).isalnum() or chr(c) in "%.+=/"}
_FULLWIDTH[0x3000] = 0x20

_PUNCT_MAP = {
    "：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",",
    "、": ",", "...": "…", "$": ".", "/": ",", "—": "-", "~": "…", "～": "…",
}
_RE_PUNCT_MAP = re.compile("|".join(re.escape(k) for k in _PUNCT_MAP))
_RE_UNSUPPORTED = re.compile(r"[^\u4e00-\u9fa5" + re.escape(PUNCTUATION) + "]+")
_RE_REPEATED_PUNCT = re.compile(f"([{re.escape(PUNCTUATION)}])[{re.escape(PUNCTUATION)}]+")
_RE_SENTENCE_END = re.compile(r"([：、，；。？！,;?!][”’]?)")
_RE_DROP_BEFORE_SPLIT = re.compile(r"[—《》【】<>{}()（）#&@“”^_|\\]")


def split_sentences(text: str) -> list[str]:
    """Split on sentence/clause punctuation (kept at the end of each piece); spaces are dropped."""
    text = _RE_DROP_BEFORE_SPLIT.sub("", text.replace(" ", ""))
    text = _RE_SENTENCE_END.sub("\\1\n", text).strip()
    return [s.strip() for s in re.split(r"\n+", text)]


def verbalize(sentence: str) -> str:
    """Traditional -> simplified, full-width -> half-width, then every number/symbol rule in order."""
    sentence = sentence.translate(_t2s_table()).translate(_FULLWIDTH)
    for rule in _RULES:
        sentence = rule(sentence)
    return sentence


def map_punctuation(text: str) -> str:
    """Map punctuation onto "!?…,.-" and drop every character that is neither a CJK ideograph nor one of those."""
    text = text.replace("嗯", "恩").replace("呣", "母")
    text = _RE_PUNCT_MAP.sub(lambda m: _PUNCT_MAP[m.group(0)], text)
    return _RE_UNSUPPORTED.sub("", text)


def collapse_punctuation(text: str) -> str:
    """Keep only the first of consecutive punctuation marks."""
    return _RE_REPEATED_PUNCT.sub(r"\1", text)


def normalize(text: str) -> str:
    """Full GPT-SoVITS v2 Chinese normalisation: the string whose characters the phones align to."""
    pieces = [map_punctuation(verbalize(s)) for s in split_sentences(text)]
    return collapse_punctuation("".join(pieces))
