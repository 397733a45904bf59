"""What a reader takes for a citation marker: ``[12]``, and lookalikes such as ``[ 5 ]``, ``［5］``, ``[2, 7]``.

Only the service's own ``[n]`` may appear in an answer or a message, so text that comes from elsewhere
(a quote's source, the question itself) has every such bracket removed.
"""

from __future__ import annotations

import re

_NUMBER = r"[\[［【]\s*\d+(?:\s*[,;–—-]\s*\d+)*\s*[\]］】]"
# With the space before it when punctuation or a space follows ("up [12]." -> "up."), bare otherwise.
_MARKER_RE = re.compile(rf"\s*{_NUMBER}(?=[\s.,;:!?)]|$)|{_NUMBER}")


def strip_markers(text: str) -> str:
    """``text`` without anything a reader would take for a citation marker. Removal repeats until none
    is left: removing "[4]" from "[9[4]]" would otherwise leave "[9]"."""
    while (stripped := _MARKER_RE.sub("", text)) != text:
        text = stripped
    return text
