"""The knobs of answer composition, read by unit scoring, quote selection and the answer service."""

from __future__ import annotations

from dataclasses import dataclass

from rag.answer.answerability import AnswerabilityModel
from rag.answer.question import QUANTITY



@dataclass(frozen=True)
class AnswerConfig:
    """Knobs of answer composition. ``centering`` and ``relative_cutoff`` were chosen on a fit part and confirmed on a
    validate part of the tuning question sets (``python -m eval.sweep composition``, eval/RESULTS.md)."""

    max_sentences: int = 4  # most quotes (answer sentences) in an answer
    relative_cutoff: float = 0.5  # extra quotes must score at least this share of the best unit
    dense_weight: float = 0.65  # unit score: similarity to the question ...
    lexical_weight: float = 0.35  # ... and IDF-weighted share of the question's terms it contains
    context_weight: float = 0.3  # unit vectors are read in the context of their passage
    centering: float = 1.0  # share of the corpus' mean unit vector removed before comparing (0 = plain cosine)
    redundancy: float = 0.88  # cosine above which a unit repeats one already chosen
    abstain_threshold: float = 0.24  # below this support the service abstains
    min_known_words: float = 0.5  # share of question words a dictionary or the corpus must know
    max_history: int = 5
    answerability: AnswerabilityModel = AnswerabilityModel()  # does a unit answer the question (rag/answer/answerability.py)
    yes_no_sentences: int = 2  # a yes/no question is settled by its best quote, and one more at most
    extra_share: float = 0.5  # quotes after the first need this share of the answerability threshold
    uncertain_sentences: int = 4  # most quotes in an answer that says part of the question is not covered
    reader_passages: int = 3  # the reader reads this many of the top passages
    reader_threshold: float | None = None  # span score - null score above which the reader answers; None: the reader's own
    # Kinds of question (QuestionAnalysis.expects) whose answer the reader decides: it answers them only with a
    # span it found. Other kinds are decided by words and similarities; the reader adds a short answer when its
    # span lies in a quote. Chosen on fit.jsonl + validate.jsonl (eval/RESULTS.md): for how-many/how-much
    # questions it handled 15 of 16 near-domain questions (10 without it) and abstained on 2 of 7 answerable
    # ones; for when, who and the rest it abstained on more answerable questions than it caught near-domain ones.
    reader_kinds: frozenset = frozenset({QUANTITY})
    # A short answer pointed inside the quotes (for a question the words answered) must score at least this
    # far above the reader's threshold: below it the reader does not read the quote as answering, and a
    # span it is made to pick there is often the trap ("Yuri Gagarin" for the first American in space).
    pointed_margin: float = 0.0
