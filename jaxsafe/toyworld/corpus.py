"""Documents of the toy world: the pretraining corpus, the corpus files and the evaluation sets.

Randomness is drawn per entity from ``(seed, stream, entity index)``, so the
control model's pretraining documents are exactly the base model's minus those
about set E, and every file is a pure function of the world and the seed.

Pretraining documents (per entity):
- ``mentions`` paragraphs stating all of the entity's facts (random templates and order);
- for practice entities only, ``mc_renderings`` lettered multiple-choice items per
  fact in the exact lm-eval WMDP format ending in " A" … " D", and
  ``cloze_renderings`` items ending in " {answer text}" — this is how the model
  learns both question formats without ever seeing an evaluation question.
"""

from __future__ import annotations


import numpy as np

from jaxsafe.data.multiple_choice import Question
from jaxsafe.evals.mcq import LETTERS, cloze_prompt, letter_prompt
from jaxsafe.toyworld.config import CorpusSpec
from jaxsafe.toyworld.world import DOMAINS, World, mc_item, paragraph

# independent random streams
_PRETRAIN, _FILES, _EVAL = 1, 2, 3


def _entity_rngs(world: World, stream: int):
    """(domain, role, entity, rng) for every entity, each with its own random stream."""
    for k, domain in enumerate(world.spec.domains):
        for j, ent in enumerate(world.entities(domain, ("practice", "eval", "A", "E"))):
            role = world.facts_of(ent)[0].role
            yield domain, role, ent, np.random.default_rng([world.seed, stream, k, j])


def as_question(item: dict) -> Question:
    return Question(item["question"], tuple(item["choices"]), item["answer"], item["subject"])


def pretraining_documents(world: World, spec: CorpusSpec, *, exclude_roles: tuple[str, ...] = ()) -> list[str]:
    """The pretraining corpus (documents in a fixed shuffled order), leaving out entities of ``exclude_roles``."""
    docs = []
    for _, role, ent, rng in _entity_rngs(world, _PRETRAIN):
        facts = world.facts_of(ent)
        own = [paragraph(facts, rng) for _ in range(spec.mentions)]
        if role == "practice":
            for f in facts:
                for _ in range(spec.mc_renderings):
                    item = mc_item(f, rng)
                    own.append(letter_prompt(as_question(item)) + " " + LETTERS[item["answer"]])
                for _ in range(spec.cloze_renderings):
                    item = mc_item(f, rng)
                    own.append(cloze_prompt(as_question(item)) + " " + item["choices"][item["answer"]])
        if role not in exclude_roles:
            docs.extend(own)
    order = np.random.default_rng([world.seed, _PRETRAIN]).permutation(len(docs))
    return [docs[i] for i in order]


def corpus_files(world: World, spec: CorpusSpec) -> dict[str, list[dict]]:
    """The text corpora RMU and the tampering attacks read, as rows with a ``text`` field.

    forget: the hazardous domain (all its entities); retain: the benign domains;
    attack_A: the hazardous entities of set A; eval_E: those of set E.
    """
    out: dict[str, list[dict]] = {"forget": [], "retain": [], "attack_A": [], "eval_E": []}
    for domain, role, ent, rng in _entity_rngs(world, _FILES):
        texts = [paragraph(world.facts_of(ent), rng) for _ in range(spec.file_docs_per_entity)]
        rows = [{"text": t, "domain": domain, "entity": ent, "role": role} for t in texts]
        out["forget" if DOMAINS[domain].hazardous else "retain"].extend(rows)
        if role == "A":
            out["attack_A"].extend(rows)
        elif role == "E":
            out["eval_E"].extend(rows)
    return out


def mcq_files(world: World) -> dict[str, list[dict]]:
    """Evaluation sets in the WMDP schema: ``questions_per_fact`` held-out renderings per fact
    (``fact_id`` names the fact, for clustering).

    hazard: sets A and E; hazard_A / hazard_E: each alone; benign: the benign
    domains; practice: items about practice facts (their format was trained on —
    a check that the format was learned, not an evaluation of knowledge).
    """
    out: dict[str, list[dict]] = {"hazard": [], "hazard_A": [], "hazard_E": [], "benign": [], "practice": []}
    k = world.spec.questions_per_fact
    for domain, role, ent, rng in _entity_rngs(world, _EVAL):
        items = [dict(mc_item(f, rng), fact_id=f"{ent}.{f.attribute}") for f in world.facts_of(ent) for _ in range(k)]
        if role == "practice":
            out["practice"].extend(items)
        elif DOMAINS[domain].hazardous:
            out["hazard"].extend(items)
            out[f"hazard_{role}"].extend(items)
        else:
            out["benign"].extend(items)
    return out
