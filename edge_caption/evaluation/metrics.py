"""Caption metrics: BLEU-1..4, ROUGE-L and CIDEr-D as pycocoevalcap 1.2 computes them (to 1e-6).

Pure Python, so it runs without torch, Java or pycocoevalcap; only METEOR needs Java and pycocoevalcap.

    evaluate({"img1": ["A red circle.", "A round red shape"]}, {"img1": "a red circle"})

`references` maps image ids to reference captions, `hypotheses` the same ids to one caption each.
`bleu`, `rouge_l`, `cider_d` and `meteor` take text already through `normalize` (`evaluate` does it);
their per-image lists follow the order of `references`.
"""
from __future__ import annotations

import contextlib
import math
import re
import shutil
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from operator import mul
from typing import NamedTuple, TypeVar

from ..errors import BackendUnavailableError, DataError

K = TypeVar("K", bound=Hashable)
References = Mapping[K, Sequence[str]]  # image id -> reference captions
Hypotheses = Mapping[K, str]  # image id -> the caption to score

# --- Tokenization: pycocoevalcap's PTBTokenizer (CoreNLP 3.4.1, -lowerCase, then its PUNCTUATIONS list
# dropped), approximated without Java. Always dropped: quotes, "--", "...", ";", "!", "?" and brackets
# (PTB's -LRB-/-RRB- become "-lrb-" under -lowerCase, which pycocoevalcap's list misses: we drop them as
# meant). "," and ":" only separate outside numbers ("1,000" and "3:30" are single PTB tokens).
_SEPARATORS = re.compile(r"[\"`()\[\]{};!?]|--+|\.\.\.+|(?<!\d)[,:]|[,:](?!\d)")
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")
# PTB splits clitics off their word: "dog's" -> "dog 's", "can't" -> "ca n't"; they stay tokens.
_CLITIC = re.compile(r"(?<=\w)(n't|'s|'re|'ve|'ll|'d|'m)\b")
_ACRONYM = re.compile(r"(?:\w\.){2,}")  # "u.s.", "e.g.", "p.m." keep their final period in PTB


def normalize(text: str) -> str:
    """Lowercase, drop the punctuation pycocoevalcap drops, and join the words with single spaces.

    >>> normalize("A Red Circle.")
    'a red circle'
    >>> normalize("A dog's ball, on a t-shirt!")
    "a dog 's ball on a t-shirt"
    """
    words: list[str] = []
    for token in _SEPARATORS.sub(" ", text.lower()).split():
        if token.isalnum():  # most words: nothing to strip or split
            words.append(token)
        elif token not in _CLITICS and not _ACRONYM.fullmatch(token):
            words.extend(_CLITIC.sub(r" \1", token.strip(".'-")).split())  # final ".", quoting "'", lone "-"
        else:
            words.append(token)
    return " ".join(words)


# --- Shared preparation: every sentence is split and its 1..n-gram counts taken once.
class _Sentence(NamedTuple):
    length: int
    grams: list[Counter[tuple[str, ...]]]  # grams[k] counts the (k+1)-grams


def _sentence(text: str, n: int) -> _Sentence:
    words = text.split()  # BLEU and CIDEr split on any whitespace (ROUGE-L does not, see below)
    return _Sentence(len(words), [Counter(zip(*[words[i:] for i in range(k)])) for k in range(1, n + 1)])


def _check(references: References[K], hypotheses: Hypotheses[K]) -> list:
    """The image ids in `references` order, after checking that both sides match."""
    missing = [k for k in references if k not in hypotheses]
    extra = [k for k in hypotheses if k not in references]
    if missing or extra:
        raise DataError(f"references and hypotheses must have the same image ids: {len(missing)} without a hypothesis "
                         f"{missing[:5]}, {len(extra)} without references {extra[:5]}. Pass exactly one hypothesis "
                         "for every image that has references.")
    for key, refs in references.items():
        if isinstance(refs, str) or len(refs) == 0:
            raise DataError(f"image {key!r}: references must be a non-empty list of strings, got {refs!r}")
        if not isinstance(hypotheses[key], str):
            raise DataError(f"image {key!r}: the hypothesis must be one string, got {hypotheses[key]!r}")
    return list(references)


def _prepare(references: References[K], hypotheses: Hypotheses[K], n: int) -> list[tuple[_Sentence, list[_Sentence]]]:
    return [(_sentence(hypotheses[k], n), [_sentence(r, n) for r in references[k]])
            for k in _check(references, hypotheses)]


# --- BLEU (pycocoevalcap.bleu: Chiang's corpus BLEU, option="closest")
_TINY, _SMALL = 1e-15, 1e-9  # pycocoevalcap's smoothing: 0 matches give ~0, never 0/0


def _brevity(test_len: int, ref_len: int) -> float:
    # Same epsilons as pycocoevalcap, so even test_len == ref_len gives a ratio just under 1 and a
    # penalty of exp(-1e-9 / len): that is why a perfect match scores 0.999999999..., not 1.
    ratio = (test_len + _TINY) / (ref_len + _SMALL)
    return math.exp(1 - 1 / ratio) if ratio < 1 else 1.0  # empty hypothesis: exp(-huge) = 0


def _geometric(correct: Sequence[float], guess: Sequence[float], brevity: float) -> list[float]:
    scores, product = [], 1.0
    for k, (c, g) in enumerate(zip(correct, guess)):
        product *= (c + _TINY) / (g + _SMALL)
        scores.append(product ** (1 / (k + 1)) * brevity)
    return scores


def _bleu(images: list[tuple[_Sentence, list[_Sentence]]], n: int) -> tuple[list[float], list[list[float]]]:
    per_image: list[list[float]] = [[] for _ in range(n)]
    total_correct, total_guess, total_test, total_ref = [0] * n, [0] * n, 0, 0
    for hyp, refs in images:
        # Clipped matches: a hypothesis n-gram counts at most as often as in the reference that has it
        # most. (Shortcuts: n-grams in no reference count 0, and a count of 1 needs no max.)
        correct = []
        for k in range(n):
            in_refs = set().union(*(ref.grams[k] for ref in refs))
            correct.append(sum(count if count == 1 else min(count, max(ref.grams[k].get(gram, 0) for ref in refs))
                               for gram, count in hyp.grams[k].items() if gram in in_refs))
        guess = [max(0, hyp.length - k) for k in range(n)]
        # "closest" reference length; a tie goes to the shorter reference, as in pycocoevalcap
        ref_len = min((abs(r.length - hyp.length), r.length) for r in refs)[1]
        for k, score in enumerate(_geometric(correct, guess, _brevity(hyp.length, ref_len))):
            per_image[k].append(score)
        total_correct = [a + b for a, b in zip(total_correct, correct)]
        total_guess = [a + b for a, b in zip(total_guess, guess)]
        total_test, total_ref = total_test + hyp.length, total_ref + ref_len
    return _geometric(total_correct, total_guess, _brevity(total_test, total_ref)), per_image


def bleu(references: References[K], hypotheses: Hypotheses[K], n: int = 4) -> tuple[list[float], list[list[float]]]:
    """Corpus BLEU-1..n and, for each order, the per-image scores: pycocoevalcap's `Bleu(n)` (n <= 4 there)."""
    if n < 1:
        raise DataError(f"n must be >= 1, got {n}")
    return _bleu(_prepare(references, hypotheses, n), n)


# --- ROUGE-L (pycocoevalcap.rouge)
def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison-Dix / Hyyro): bit i of `row` is
    row i of the usual table, so each word of `b` costs a few big-int operations, not a loop over `a`."""
    positions: dict[str, int] = {}
    for i, word in enumerate(a):
        positions[word] = positions.get(word, 0) | (1 << i)
    full = (1 << len(a)) - 1
    row = full
    for word in b:
        matched = row & positions.get(word, 0)
        row = ((row + matched) | (row - matched)) & full
    return len(a) - row.bit_count()


def rouge_l(references: References[K], hypotheses: Hypotheses[K]) -> tuple[float, list[float]]:
    """Mean and per-image ROUGE-L F-score (beta 1.2), as pycocoevalcap's `Rouge`: precision and recall
    are each maximised over the references separately, not taken from the best reference."""
    beta2, scores = 1.2**2, []
    for key in _check(references, hypotheses):
        # split(" "), not split(): an empty hypothesis is one empty token, so no division by zero
        hyp = hypotheses[key].split(" ")
        lcs = [(_lcs(ref, hyp), len(ref)) for ref in (r.split(" ") for r in references[key])]
        precision = max(common / len(hyp) for common, _ in lcs)
        recall = max(common / length for common, length in lcs)
        scores.append((1 + beta2) * precision * recall / (recall + beta2 * precision) if precision and recall else 0.0)
    return (sum(scores) / len(scores) if scores else 0.0), scores


# --- CIDEr-D (pycocoevalcap.cider)
def _document_frequency(reference_sets: Sequence[list[_Sentence]], n: int = 4) -> Counter:
    """In how many images' reference sets each 1..n-gram occurs."""
    frequency: Counter = Counter()
    for refs in reference_sets:
        frequency.update(set().union(*(grams for ref in refs for grams in ref.grams[:n])))
    return frequency


def _cider(images: list[tuple[_Sentence, list[_Sentence]]], n: int = 4, sigma: float = 6.0,
           frequency: tuple[Counter, int] | None = None) -> tuple[float, list[float]]:
    """`frequency`: (document frequencies, number of images) from a fixed corpus; None takes them from
    `images` themselves, as pycocoevalcap does."""
    if not images:  # pycocoevalcap fails here (max() of no document frequencies); we say 0
        return 0.0, []
    # Document frequency: in how many images' reference sets each n-gram occurs. It is taken from
    # the evaluated set itself, so an image's score depends on which other images are evaluated.
    counts, corpus_size = frequency or (_document_frequency([refs for _, refs in images], n), len(images))
    log_images = math.log(corpus_size)  # pycocoevalcap's "ref_len": log of #images, not #references
    idf = {gram: log_images - math.log(count) for gram, count in counts.items()}

    scores = []
    for hyp, refs in images:
        # An n-gram absent from every reference set has df 0, clamped to 1: idf = log(#images).
        hyp_vec = [{g: tf * idf.get(g, log_images) for g, tf in grams.items()} for grams in hyp.grams[:n]]
        hyp_norm = [math.hypot(*vec.values()) for vec in hyp_vec]
        total = 0.0
        for ref in refs:  # each reference is weighed once: it belongs to one image, one hypothesis
            # Quirk: pycocoevalcap's "length" adds up the term frequencies of the *bigrams* (`if n == 1`
            # on a 0-based order), i.e. words - 1. Kept, though it only differs from a word count for an
            # empty sentence, whose n-gram vectors are empty so its score is 0 anyway.
            delta = max(0, hyp.length - 1) - max(0, ref.length - 1)
            penalty = math.exp(-(delta**2) / (2 * sigma**2))
            for vec, norm, grams in zip(hyp_vec, hyp_norm, ref.grams):
                ref_norm = math.hypot(*(tf * idf.get(g, log_images) for g, tf in grams.items()))
                # CIDEr-D clipping, min(hyp, ref) * ref: only n-grams in both contribute
                dot = 0.0
                for gram in vec.keys() & grams.keys():
                    weight = grams[gram] * idf.get(gram, log_images)
                    dot += min(vec[gram], weight) * weight
                # pycocoevalcap skips the division when a norm is 0 (empty sentence, or n-grams in
                # every image's references); the dot product is 0 then, so this is its result.
                total += dot / (norm * ref_norm) * penalty if norm and ref_norm else 0.0
        scores.append(10.0 * total / n / len(refs))  # mean over orders, over references, x10
    return sum(scores) / len(scores), scores


class CiderD:
    """CIDEr-D with document frequencies fixed from a corpus of reference sets (self-critical training's
    reward: a caption's score must not depend on which other captions share its batch).

    `scores(references, hypotheses)` gives one CIDEr-D per pair; with the corpus equal to the scored
    references it equals `cider_d`'s per-image scores."""

    def __init__(self, corpus: Sequence[Sequence[str]]):
        sets = [[_sentence(normalize(r), 4) for r in refs] for refs in corpus]
        if not sets:
            raise DataError("CiderD needs a non-empty corpus of reference sets to take document frequencies from")
        self.frequency = (_document_frequency(sets), len(sets))

    def scores(self, references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> list[float]:
        """CIDEr-D of hypotheses[i] against references[i], for each i (text is normalized here)."""
        if len(references) != len(hypotheses):
            raise DataError(f"{len(hypotheses)} hypotheses for {len(references)} reference sets: give one each")
        images = [(_sentence(normalize(h), 4), [_sentence(normalize(r), 4) for r in refs])
                  for h, refs in zip(hypotheses, references)]
        return _cider(images, frequency=self.frequency)[1]


def cider_d(references: References[K], hypotheses: Hypotheses[K]) -> tuple[float, list[float]]:
    """Mean and per-image CIDEr-D (sigma 6, 1..4-grams, x10), as pycocoevalcap's `Cider`. With one image
    every idf is log(1) = 0, so CIDEr is 0 whatever the captions, as in pycocoevalcap."""
    return _cider(_prepare(references, hypotheses, 4))


# --- METEOR (pycocoevalcap's Java jar) and the one-call evaluation
def _meteor(references: References[K], hypotheses: Hypotheses[K]) -> float:
    keys = _check(references, hypotheses)
    if shutil.which("java") is None:
        raise BackendUnavailableError("METEOR needs Java: install a JRE (`java` on PATH), or pass meteor=False")
    try:
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError:
        raise BackendUnavailableError("METEOR needs pycocoevalcap: pip install pycocoevalcap, or pass meteor=False") from None

    def line(text: str) -> str:  # a newline or "|||" would desynchronise the jar's line protocol
        return " ".join(text.replace("|||", " ").split())

    scorer = None
    try:
        scorer = Meteor()  # starts the JVM
        score, _ = scorer.compute_score({k: [line(r) for r in references[k]] for k in keys},
                                        {k: [line(hypotheses[k])] for k in keys})
        return float(score)
    except (OSError, ValueError) as error:  # no JVM, or it died: broken pipe, or float("") of no output
        raise BackendUnavailableError(f"METEOR's Java process failed ({error}); check `java -version`") from error
    finally:
        # Meteor only stops its JVM in __del__, which takes a lock that a failed compute_score never
        # released (so it would hang): stop the process here and leave the lock free for __del__.
        if scorer is not None:
            if scorer.lock.locked():
                scorer.lock.release()
            scorer.meteor_p.kill()
            scorer.meteor_p.wait()
            for stream in (scorer.meteor_p.stdin, scorer.meteor_p.stdout, scorer.meteor_p.stderr):
                with contextlib.suppress(OSError):  # flushing unsent input to a dead JVM: broken pipe
                    stream.close()


def meteor(references: References[K], hypotheses: Hypotheses[K]) -> float | None:
    """pycocoevalcap's METEOR 1.5 corpus score, or None where Java or pycocoevalcap is missing."""
    try:
        return _meteor(references, hypotheses)
    except BackendUnavailableError:
        return None


def evaluate(references: References[K], hypotheses: Hypotheses[K], *, meteor: bool | None = None) -> dict[str, float]:
    """Normalize every caption and score the set: BLEU-1..4, ROUGE-L, CIDEr, METEOR, exact.

    meteor=None computes METEOR where Java and pycocoevalcap are present, True requires it
    (BackendUnavailableError otherwise), False skips it. "exact": the fraction of images whose
    normalized hypothesis equals one of their normalized references.
    """
    keys = _check(references, hypotheses)
    if not keys:
        raise DataError("nothing to evaluate: references and hypotheses are empty")
    refs = {k: [normalize(r) for r in references[k]] for k in keys}
    hyps = {k: normalize(hypotheses[k]) for k in keys}
    images = _prepare(refs, hyps, 4)
    corpus_bleu, _ = _bleu(images, 4)
    scores = {f"BLEU-{k + 1}": float(s) for k, s in enumerate(corpus_bleu)}
    scores["ROUGE-L"] = float(rouge_l(refs, hyps)[0])
    scores["CIDEr"] = float(_cider(images)[0])
    if meteor is not False:
        try:
            scores["METEOR"] = _meteor(refs, hyps)
        except BackendUnavailableError:
            if meteor:
                raise
    scores["exact"] = sum(hyps[k] in refs[k] for k in keys) / len(keys)
    return scores
