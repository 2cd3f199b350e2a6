"""OVOS intent pipeline (``opm.pipeline``): padacioso's matcher, run in the core process.

Stock padacioso starts a ``ProcessPoolExecutor`` for every utterance and every confidence pass
(high, then medium, then low), so a plain "what time is it" pays for spawning worker processes
two or three times: about 1 s of the 1.0-1.5 s between transcript and answer measured on a
2-core box (docs/design.md). Matching a few hundred simplematch patterns takes microseconds, so here it
runs in-process, and the result of one pass is reused by the next.

It also answers ``mycroft.skills.train``: padacioso has no training step, and without an answer
ovos-core waits 60 s for ``mycroft.skills.trained`` (sent only by padatious) before it reports
ready.

Every match carries ``voxfleet_match: {"stage": "padacioso_high"|"padacioso_medium"|"padacioso_low",
"confidence": padacioso's score}`` in its data, so the session record says which stage answered.

Pipeline ids: ``voxfleet-intent-pipeline-high``, ``-medium``, ``-low``. Config under
``intents.voxfleet-intent-pipeline``: ``conf_high``, ``conf_med``, ``conf_low``, ``fuzz``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from ovos_bus_client.message import Message
from ovos_plugin_manager.templates.pipeline import IntentHandlerMatch
from ovos_utils import flatten_list
from ovos_utils.lang import standardize_lang_tag
from padacioso import IntentContainer
from padacioso.opm import PadaciosoPipeline


class InProcessIntentContainer(IntentContainer):
    """padacioso's container with matching done serially and the last results remembered."""

    _CACHE_SIZE = 8

    def __init__(self, fuzz: bool = False, n_workers: int = 1) -> None:
        super().__init__(fuzz=fuzz, n_workers=1)
        self._results: OrderedDict[str, list[dict]] = OrderedDict()

    def _forget(self) -> None:
        self._results.clear()

    def calc_intents(self, query: str) -> Iterator[dict]:
        cached = self._results.get(query)
        if cached is None:
            excluded = self._filter(query)
            cached = []
            for name, regexes in self.intent_samples.items():
                if name in excluded:
                    continue
                match = self._match(query, name, regexes)
                if match is not None:
                    cached.append(match)
            self._results[query] = cached
            while len(self._results) > self._CACHE_SIZE:
                self._results.popitem(last=False)
        # Callers mutate the dicts they get (padacioso pops "entities"), so hand out copies.
        for match in cached:
            yield {**match, "entities": dict(match.get("entities") or {})}


def _forgetting(method_name: str):
    """Wrap a container mutator so that remembered matches are dropped when it runs."""
    base = getattr(IntentContainer, method_name)

    def wrapper(self: InProcessIntentContainer, *args, **kwargs):
        self._forget()
        return base(self, *args, **kwargs)

    wrapper.__name__ = method_name
    wrapper.__doc__ = base.__doc__
    return wrapper


# Anything that changes what may match (intents, entities, context) invalidates remembered results.
for _name in ("add_intent", "remove_intent", "add_entity", "remove_entity", "exclude_keywords",
              "set_context", "unset_context", "exclude_context", "unexclude_context",
              "require_context", "unrequire_context"):
    setattr(InProcessIntentContainer, _name, _forgetting(_name))


class InProcessPadaciosoPipeline(PadaciosoPipeline):
    def __init__(self, bus=None, config: dict | None = None) -> None:
        super().__init__(bus=bus, config=config)
        self.containers = {
            lang: InProcessIntentContainer(bool(self.config.get("fuzz", False)))
            for lang in self.containers
        }
        self.bus.on("mycroft.skills.train", self._handle_train)

    def _match_level(self, utterances, limit, lang=None, message: Message | None = None):
        """padacioso's own ``_match_level``, with the stage and its confidence in the match data."""
        utterances = flatten_list(utterances)
        lang = standardize_lang_tag(lang or self.lang)
        found = self.calc_intent(utterances, lang, message)
        if found is None or not found.conf > limit:
            return None
        level = ("high" if limit >= self.conf_high else "medium" if limit >= self.conf_med else "low")
        data = {**(found.matches or {}),
                "voxfleet_match": {"stage": f"padacioso_{level}", "confidence": round(float(found.conf), 4)}}
        return IntentHandlerMatch(match_type=found.name, match_data=data,
                                  skill_id=found.name.split(":")[0], utterance=found.sent)

    def _handle_train(self, message: Message) -> None:
        self.bus.emit(message.reply("mycroft.skills.trained", {}))

    def shutdown(self) -> None:
        self.bus.remove("mycroft.skills.train", self._handle_train)
        super().shutdown()
