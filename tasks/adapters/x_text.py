"""X's weighted text length, after the twitter-text rules.

X does not count characters: it NFC-normalises the text, then gives each code
point a weight (1 for most Latin, punctuation and some spacing ranges, 2 for
everything else, so CJK and emoji weigh 2) and counts every URL as 23,
whatever its length, because X shortens links to t.co. A post may weigh at
most 280.

>>> weighted_length("hello")
5
>>> weighted_length("see https://example.com/a/very/long/path")
27
"""

from __future__ import annotations

import re
import unicodedata

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23

# (first, last) code points of the ranges that weigh 1, from twitter-text's
# v3 configuration; all other code points weigh 2.
_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))

# A URL as twitter-text sees one, simplified: an explicit http(s) scheme, or a
# bare host ending in a common top-level domain, with an optional path.
# Trailing punctuation is not part of the URL ("see x.com." ends at "com").
_TLDS = (
    "com|org|net|edu|gov|io|co|ai|app|dev|me|info|biz|tv|ly|gl|be|fm|uk|de|"
    "fr|es|it|nl|jp|cn|ru|br|in|au|ca|us|eu|ch|se|no|dk|fi|pl|at|ie|nz"
)
_URL = re.compile(
    r"(?:https?://[^\s<>\"]+"
    r"|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:" + _TLDS + r")\b"
    r"(?:/[^\s<>\"]*)?)",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) of each URL in `text`, trailing punctuation excluded."""
    spans = []
    for match in _URL.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] in _TRAILING_PUNCTUATION:
            end -= 1
        spans.append((start, end))
    return spans


def _weight(char: str) -> int:
    code = ord(char)
    return 1 if any(lo <= code <= hi for lo, hi in _LIGHT_RANGES) else 2


def weighted_length(text: str) -> int:
    """The length X counts against its 280 limit."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    position = 0
    for start, end in find_urls(text):
        total += sum(_weight(char) for char in text[position:start]) + URL_WEIGHT
        position = end
    return total + sum(_weight(char) for char in text[position:])
