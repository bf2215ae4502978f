from collections import Counter

import pytest

from jaxsafe.data.multiple_choice import Question
from jaxsafe.errors import UserError
from jaxsafe.evals.mcq import letter_prompt
from jaxsafe.toyworld.corpus import CorpusSpec, corpus_files, mcq_files, pretraining_documents
from jaxsafe.toyworld.tokenizer import train_tokenizer
from jaxsafe.toyworld.world import DOMAINS, WorldSpec, attribute, make_world

SPEC = WorldSpec(eval_entities=10, practice_entities=4, questions_per_fact=2)
CORPUS = CorpusSpec(mentions=3, mc_renderings=2, cloze_renderings=1, file_docs_per_entity=2)


@pytest.fixture(scope="module")
def world():
    return make_world(SPEC, seed=7)


def test_world_is_deterministic_and_partitioned(world):
    assert make_world(SPEC, seed=7) == world
    assert make_world(SPEC, seed=8) != world
    roles = Counter((f.domain, f.role) for f in world.facts)
    n_attr = {d: len(DOMAINS[d].attributes) for d in SPEC.domains}
    assert roles == {
        ("pathogens", "A"): 5 * n_attr["pathogens"], ("pathogens", "E"): 5 * n_attr["pathogens"],
        ("pathogens", "practice"): 4 * n_attr["pathogens"],
        ("towns", "eval"): 10 * n_attr["towns"], ("towns", "practice"): 4 * n_attr["towns"],
    }
    names = [f.entity for f in world.facts]
    assert len(set(names)) == 2 * (10 + 4)  # every entity has one name, distinct across domains
    for f in world.facts:
        assert f.value in attribute(f).values


def test_bad_specs_are_user_errors():
    with pytest.raises(UserError, match="unknown toy-world domain 'dragons'"):
        make_world(WorldSpec(domains=("pathogens", "dragons")), 0)
    with pytest.raises(UserError, match="exactly one hazardous domain"):
        make_world(WorldSpec(domains=("towns",)), 0)


def test_mcq_files_are_wmdp_schema_and_correct(world):
    files = mcq_files(world)
    assert len(files["hazard"]) == len(files["hazard_A"]) + len(files["hazard_E"]) == 10 * 4 * 2
    assert len(files["benign"]) == 80 and len(files["practice"]) == 2 * 4 * 4 * 2
    assert Counter(Counter(i["fact_id"] for i in files["hazard"]).values()) == {2: 40}  # each fact asked twice
    facts = {(f.entity, f.attribute): f.value for f in world.facts}
    for item in files["hazard"] + files["benign"]:
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        assert item["choices"][item["answer"]] == facts[(item["entity"], item["attribute"])]
        assert item["entity"] in item["question"]
    # answers are spread over the four letters
    assert len({i["answer"] for i in files["hazard"]}) == 4


def test_pretraining_holds_out_evaluation_items_and_control_drops_E(world):
    base = pretraining_documents(world, CORPUS)
    control = pretraining_documents(world, CORPUS, exclude_roles=("E",))
    assert pretraining_documents(world, CORPUS) == base
    e_names = set(world.entities("pathogens", ("E",)))
    about_e = Counter(d for d in base if any(f" {n} " in d or f" {n}." in d or f" {n}?" in d for n in e_names))
    assert about_e and Counter(control) == Counter(base) - about_e
    # no evaluation question appears in lettered form in the corpus; practice items do
    files = mcq_files(world)
    prompts = {letter_prompt(Question(i["question"], tuple(i["choices"]), i["answer"], i["subject"])) for i in files["hazard"] + files["benign"]}
    assert not any(d.rsplit(" ", 1)[0] in prompts for d in base)
    assert sum(d.endswith((" A", " B", " C", " D")) and "\nAnswer:" in d for d in base) == 8 * 4 * 2


def test_corpus_files_roles(world):
    files = corpus_files(world, CORPUS)
    assert {r["domain"] for r in files["forget"]} == {"pathogens"}
    assert {r["domain"] for r in files["retain"]} == {"towns"}
    assert {r["role"] for r in files["attack_A"]} == {"A"} and {r["role"] for r in files["eval_E"]} == {"E"}
    assert len(files["attack_A"]) == len(files["eval_E"]) == 5 * 2
    assert all(isinstance(r["text"], str) and r["text"].strip() for rows in files.values() for r in rows)


def test_tokenizer_has_bos_and_single_token_names_and_letters(world):
    docs = pretraining_documents(world, CORPUS)
    tok = train_tokenizer(docs, 4096)
    assert train_tokenizer(docs, 4096).get_vocab() == tok.get_vocab()  # deterministic
    ids = tok.encode(docs[0])
    assert ids[0] == tok.bos_token_id and tok.eos_token_id is not None and tok.pad_token_id is not None
    assert tok.decode(ids, skip_special_tokens=True) == docs[0]
    for name in {f.entity for f in world.facts}:
        assert len(tok.encode(" " + name, add_special_tokens=False)) == 1
    for letter in "ABCD":
        assert len(tok.encode(" " + letter, add_special_tokens=False)) == 1
