"""The toy multi-modal knowledge graph: ``momok toy --out DIR --seed N``.

A small synthetic dataset in the same on-disk layout as the real benchmarks (docs/ARCHITECTURE.md,
"Dataset layout on disk"), with real PNG images and English descriptions. Tests and the CI smoke
run of the whole pipeline use it; with the defaults it is written in about a second or two.

Files written into ``DIR``::

    entity2id.txt relation2id.txt            "name id", ids 0..N-1 / 0..R-1
    train.txt valid.txt test.txt             "head relation tail ." (names, single spaces)
    descriptions.tsv                         header "entity<TAB>description"; entities without text have no row
    images/<entity>/<k>.png                  k = 0..n-1, n in 0..max_images; RGB, image_size x image_size
    attributes.tsv                           header "entity colour shape size taste" (tab-separated): the latent truth
    relation_rules.tsv                       header "relation head_attribute head_value tail_attribute tail_value":
                                             one row per relation, mapped kind and head value
    README.md                                generator, seed, options, rules and statistics

Entity names are ``e0000``, ``e0001``, ... (folder-safe, so ``entity_dirname(name) == name``);
relation names say which kinds their rule maps, e.g. ``r00_eats_colour-shape-taste``.

How the signal is planted
-------------------------
1. **Latent attributes.** Every entity draws, independently and uniformly, a ``colour`` (red, green,
   blue, yellow, purple), a ``shape`` (circle, square, triangle), a ``size`` (small, large) and a
   ``taste`` (sweet, sour, bitter, salty).
2. **Relations follow the attributes, finely.** Relation ``k`` maps three of the four kinds
   (``RULE_KINDS[k % 4]``: every rule leaves out a different kind) each onto itself by a random
   permutation of its values, e.g. colour red -> blue, shape circle -> triangle, taste sour -> sweet.
   A rule triple's head is any entity; its tail is drawn among the entities whose three mapped values
   are the images of the head's, i.e. one of 24..60 value combinations, so knowing the attributes
   narrows a query to a few percent of the entities (and the score is a sum of per-kind value
   matches, which bilinear scorers can represent). A fraction ``rule_noise`` of the triples ignore
   the rule (head and tail from all entities), so the signal is strong but not exact.
3. **Long tail.** Entities are drawn with Zipf-like activity weights ``(rank + 0.04 N) ** -zipf``
   over a random ranking, so a few hubs take part in dozens to hundreds of triples while many entities
   take part in few. First, every entity gets ``anchors`` (default 2) "anchor" triples (rule triples
   of random relations, the entity as head or tail, the partner drawn by activity among those the
   rule allows), so none is isolated and a long-tail entity can have one triple in valid/test and
   keep one in train; with the defaults about a third of the entities have at most three training
   triples and about a quarter of the test triples involve one. A structure-only model sees too few
   triples of such an entity (each showing only three kinds, through the permutation) to infer its
   attributes; the modalities show them directly, and their projection is shared by all entities.
4. **The modalities show the attributes, complementarily.**

   =========  ===================================================  ==========================================
   attribute  image                                                text
   =========  ===================================================  ==========================================
   colour     always: fill colour of the shape (+/- jitter)         in ~50% of descriptions
   shape      always: circle, square or triangle (random rotation)  in ~80% of descriptions (synonyms)
   size       always: small or large shape (+/- jitter)             in ~80% of descriptions (synonyms)
   taste      never                                                 in ~90% of descriptions (synonyms)
   =========  ===================================================  ==========================================

   Images: 0 to ``max_images`` per entity (none for 15% of the entities; for max_images = 3,
   1, 2, 3 images with probabilities 0.38, 0.28, 0.19), drawn to be easy for frozen ImageNet
   encoders: one large, clearly coloured shape (small: about a third of the picture, large: about
   two thirds) at a random position away from the border, on a plain light-grey background; a fraction
   ``image_noise`` of the images show a random colour and shape instead (mislabelled web images).
   Descriptions: a fraction ``missing_text`` of the entities have none; the others say the mentioned
   values plainly (the plain word 70% of the time, else a synonym): "<Name> is a small red round
   gadget. It tastes sour.", with a made-up proper name, three opening templates and, in half of
   them, one distractor sentence that mentions no attribute.
5. **Splits.** The unique triples are shuffled; walking through them, a triple goes to valid (then
   test) while those are below ``valid_fraction`` (``test_fraction``) of all triples, but only if its
   head, tail and relation keep at least one other triple in train. So every entity and relation of
   valid/test also occurs in train (guaranteed).

Measured signal (tests/test_toy_signal.py): with features extracted by ``momok features`` (frozen
MobileNetV2, all-MiniLM-L6-v2) from a 200-entity toy, 30 epochs of MoMoK (``normalize_features``)
beat the structure-only variant by 0.056-0.097 test MRR over 8 seed pairs (full 0.17-0.21,
structure-only 0.08-0.14, random ranking 0.03).

Determinism: one ``numpy.random.SeedSequence(seed)`` is split into independent streams for the graph,
the images and the texts; files are written in a fixed order, PNGs without timestamps, so the same
seed and options give byte-identical files (with the same numpy, Pillow and zlib versions).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from momok.errors import ConfigError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 215),
    "yellow": (230, 210, 40),
    "purple": (150, 50, 190),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
TASTES = ("sweet", "sour", "bitter", "salty")
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "colour": tuple(COLOURS),
    "shape": SHAPES,
    "size": SIZES,
    "taste": TASTES,
}
# The attribute kinds that relation k's rule maps (each onto itself) are RULE_KINDS[k % 4]: every
# rule leaves one kind out, so one triple never shows all of an entity's attributes.
RULE_KINDS: tuple[tuple[str, ...], ...] = (
    ("colour", "shape", "taste"), ("colour", "size", "taste"), ("shape", "size", "taste"), ("colour", "shape", "size"),
)
VERBS = (
    "eats", "likes", "chases", "visits", "guards", "trades_with", "follows", "paints",
    "hides_near", "sings_to", "builds", "fears", "mimics", "carries", "greets", "teaches",
)
# Share of entities without any image; the others have k = 1..max_images images with weight max_images + 2 - k.
NO_IMAGE = 0.15
# Probability that a description mentions each attribute.
TEXT_MENTION = {"colour": 0.5, "shape": 0.8, "size": 0.8, "taste": 0.9}

SYNONYMS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet"),
    "green": ("green", "emerald", "leafy green"),
    "blue": ("blue", "azure", "navy"),
    "yellow": ("yellow", "golden", "lemon-coloured"),
    "purple": ("purple", "violet", "plum-coloured"),
    "circle": ("round", "circular", "disc-shaped"),
    "square": ("square", "boxy", "four-cornered"),
    "triangle": ("triangular", "pointed", "wedge-shaped"),
    "small": ("small", "tiny", "little"),
    "large": ("large", "big", "huge"),
    "sweet": ("sweet", "sugary", "honeyed"),
    "sour": ("sour", "tart", "acidic"),
    "bitter": ("bitter", "harsh", "acrid"),
    "salty": ("salty", "briny", "salted"),
}
NOUNS = ("thing", "object", "creature", "gadget", "artifact", "specimen", "item", "curiosity")
PLACES = (
    "the old harbour", "mountain villages", "the northern marsh", "a quiet library", "the city market",
    "abandoned mines", "coastal caves", "a royal garden", "the eastern desert", "river deltas",
)
FILLERS = (
    "It was first recorded near {place}.",
    "People often find it in {place}.",
    "Nobody remembers who named it.",
    "Collectors trade it at fairs every spring.",
    "Its story is told in {place}.",
    "Some say it brings luck to travellers.",
    "It appears in an old song from {place}.",
    "Scholars still argue about its origin.",
)
SYLLABLES = ("ka", "lo", "mi", "ren", "tu", "vo", "zel", "bar", "qui", "sna", "dor", "fe", "gli", "po", "xu")


@dataclass
class ToyOptions:
    """Sizes and noise levels of the toy dataset (the keyword arguments of :func:`make_toy`)."""

    #: number of entities (names e0000, e0001, ...)
    entities: int = 800
    #: number of relations; relation k's rule maps the attribute kinds RULE_KINDS[k % 4]
    relations: int = 8
    #: number of unique triples over all splits (the anchor triples included)
    triples: int = 4800
    #: anchor triples per entity, drawn before the activity-weighted rest: every entity takes part in
    #: at least this many triples, so with 2 a long-tail entity can have one in valid/test and one in train
    anchors: int = 2
    #: target share of all triples in valid and in test (fewer when the coverage rule forbids more)
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    #: share of (non-anchor) triples that ignore their relation's attribute rule
    rule_noise: float = 0.15
    #: exponent of the Zipf-like entity activity weights (rank + 0.04 N) ** -zipf; larger = longer tail
    zipf: float = 1.5
    #: most images per entity (each entity has 0..max_images); 0 writes no images/ folder
    max_images: int = 3
    #: width and height of every image in pixels
    image_size: int = 96
    #: share of images that show a random colour and shape instead of the entity's
    image_noise: float = 0.05
    #: share of entities without a description
    missing_text: float = 0.15

    def validate(self) -> None:
        """Raise ConfigError naming the first option with an unusable value."""
        checks = [
            ("entities", 20 <= self.entities <= 100_000, "must be in 20..100000"),
            ("relations", 1 <= self.relations <= 64, "must be in 1..64"),
            ("anchors", 1 <= self.anchors <= 10, "must be in 1..10"),
            ("triples", self.anchors * self.entities <= self.triples <= 50 * self.entities,
             "must be between anchors times the number of entities and 50 times that number"),
            ("valid_fraction", 0 <= self.valid_fraction <= 0.4, "must be in [0, 0.4]"),
            ("test_fraction", 0 <= self.test_fraction <= 0.4, "must be in [0, 0.4]"),
            ("rule_noise", 0 <= self.rule_noise <= 1, "must be in [0, 1]"),
            ("zipf", 0 <= self.zipf <= 5, "must be in [0, 5]"),
            ("max_images", 0 <= self.max_images <= 20, "must be in 0..20"),
            ("image_size", 16 <= self.image_size <= 512, "must be in 16..512"),
            ("image_noise", 0 <= self.image_noise <= 1, "must be in [0, 1]"),
            ("missing_text", 0 <= self.missing_text <= 1, "must be in [0, 1]"),
        ]
        for name, ok, problem in checks:
            if not ok:
                raise ConfigError(f"toy option {name}={getattr(self, name)!r} {problem}")


@dataclass(frozen=True)
class Rule:
    """Relation rule: for each i, a rule triple's tail has ``kinds[i] == maps[i][head's kinds[i]]``
    (``maps[i]``: a permutation of the values of ``kinds[i]``, value name -> value name)."""

    kinds: tuple[str, ...]
    maps: tuple[dict[str, str], ...]


def combination_ids(attributes: dict[str, np.ndarray], kinds: tuple[str, ...]) -> np.ndarray:
    """Index of every entity's value combination of ``kinds`` (first kind slowest), int [n]."""
    ids = np.zeros_like(attributes[kinds[0]])
    for kind in kinds:
        ids = ids * len(ATTRIBUTES[kind]) + attributes[kind]
    return ids


# --------------------------------------------------------------------------- latent structure
def draw_attributes(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Attribute kind -> int array [n] of value indices into ATTRIBUTES[kind], uniform and independent."""
    return {kind: rng.integers(0, len(values), size=n) for kind, values in ATTRIBUTES.items()}


def draw_rules(rng: np.random.Generator, count: int) -> list[Rule]:
    """One rule per relation: kinds from RULE_KINDS (cycling), a random permutation of each kind's values."""
    rules: list[Rule] = []
    for k in range(count):
        kinds = RULE_KINDS[k % len(RULE_KINDS)]
        maps = []
        for kind in kinds:
            values = ATTRIBUTES[kind]
            maps.append({v: values[int(i)] for v, i in zip(values, rng.permutation(len(values)))})
        rules.append(Rule(kinds, tuple(maps)))
    return rules


def relation_name(k: int, rule: Rule) -> str:
    """Readable name with the kinds the rule maps, e.g. ``r00_eats_colour-shape-taste``."""
    return f"r{k:02d}_{VERBS[k % len(VERBS)]}_{'-'.join(rule.kinds)}"


def draw_triples(rng: np.random.Generator, opts: ToyOptions, attributes: dict[str, np.ndarray],
                 rules: list[Rule]) -> np.ndarray:
    """Unique (head, relation, tail) id triples, int64 [opts.triples, 3], in generation order.

    First ``opts.anchors`` rounds of anchor triples, one per entity and round (a rule triple of a
    random relation with the entity as head or tail, partner drawn by activity among those the rule
    allows), then rule triples (probability 1 - rule_noise) and random triples until ``opts.triples``
    unique triples exist. A rule triple's head may be any entity (drawn by activity); its tail is drawn
    by activity among the entities whose values of the rule's kinds are the images of the head's.
    """
    n = opts.entities
    rank = rng.permutation(n) + 1
    weight = (rank + 0.04 * n) ** -opts.zipf
    anyone = weight / weight.sum()  # any entity, by activity
    # Per relation: every entity's combination of the rule's kinds (as a tail), and the combination
    # the rule asks of its tails (as a head).
    tail_combo, mapped = [], []
    for rule in rules:
        tail_combo.append(combination_ids(attributes, rule.kinds))
        asked = {}  # kind -> int [n]: the value the rule asks of a tail of each entity (as head)
        for kind, mapping in zip(rule.kinds, rule.maps):
            lookup = np.array([ATTRIBUTES[kind].index(mapping[v]) for v in ATTRIBUTES[kind]])
            asked[kind] = lookup[attributes[kind]]
        mapped.append(combination_ids(asked, rule.kinds))
    # tail_p[r][c]: activity distribution over the entities with combination c (None: nobody)
    tail_p: list[dict[int, np.ndarray | None]] = []
    for r in range(len(rules)):
        tail_p.append({})
        for c in np.unique(mapped[r]).tolist():
            w = weight * (tail_combo[r] == c)
            tail_p[r][c] = w / w.sum() if w.sum() > 0 else None

    seen: set[tuple[int, int, int]] = set()
    triples: list[tuple[int, int, int]] = []

    def add(h: int, r: int, t: int) -> bool:
        if h != t and (h, r, t) not in seen:
            seen.add((h, r, t))
            triples.append((h, r, t))
            return True
        return False

    # Anchors: every entity takes part in at least `anchors` triples (as long as partners exist).
    for _ in range(opts.anchors):
        for e in range(n):
            for attempt in range(20):  # a relation and a partner that give a new triple
                r = int(rng.integers(len(rules)))
                as_head = rng.random() < 0.5
                if as_head:  # a tail of the combination e's head combination maps to
                    p = tail_p[r][int(mapped[r][e])]
                else:  # a head whose combination maps to e's tail combination
                    w = weight * (mapped[r] == tail_combo[r][e])
                    p = w / w.sum() if w.sum() > 0 else None
                if p is None or attempt == 19:  # no partner the rule allows, or no luck: anyone
                    p = anyone
                other = int(rng.choice(n, p=p))
                if add(*((e, r, other) if as_head else (other, r, e))):
                    break

    # The rest, in batches (vectorised draws; duplicates and self-loops are dropped and redrawn).
    attempts = 0
    while len(triples) < opts.triples:
        attempts += 1
        if attempts > 200:
            raise ConfigError(f"toy options: could not draw {opts.triples} distinct triples for "
                              f"{n} entities and {len(rules)} relations")
        batch = 2 * (opts.triples - len(triples)) + 16
        rels = rng.integers(0, len(rules), size=batch)
        noisy = rng.random(batch) < opts.rule_noise
        heads = rng.choice(n, size=batch, p=anyone)
        tails = np.empty(batch, dtype=np.int64)
        sel = np.flatnonzero(noisy)
        tails[sel] = rng.choice(n, size=len(sel), p=anyone)
        for r in range(len(rules)):
            for c, p in tail_p[r].items():
                sel = np.flatnonzero((rels == r) & ~noisy & (mapped[r][heads] == c))
                tails[sel] = rng.choice(n, size=len(sel), p=anyone if p is None else p)
        for h, r, t in zip(heads.tolist(), rels.tolist(), tails.tolist()):
            if len(triples) >= opts.triples:
                break
            add(h, r, t)
    return np.asarray(triples, dtype=np.int64)


def split_triples(rng: np.random.Generator, triples: np.ndarray, num_entities: int, num_relations: int,
                  valid_fraction: float, test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, valid, test): shuffle, then move triples out of train only while their head, tail and
    relation keep another train triple, so every valid/test entity and relation occurs in train."""
    order = rng.permutation(len(triples))
    entity_count = np.bincount(triples[:, [0, 2]].ravel(), minlength=num_entities)
    relation_count = np.bincount(triples[:, 1], minlength=num_relations)
    want = {"valid": round(valid_fraction * len(triples)), "test": round(test_fraction * len(triples))}
    chosen: dict[str, list[int]] = {"valid": [], "test": []}
    for i in order.tolist():
        split = "valid" if len(chosen["valid"]) < want["valid"] else "test"
        if len(chosen[split]) >= want[split]:
            break
        h, r, t = triples[i].tolist()
        if entity_count[h] > 1 and entity_count[t] > 1 and relation_count[r] > 1:
            entity_count[h] -= 1
            entity_count[t] -= 1
            relation_count[r] -= 1
            chosen[split].append(i)
    held_out = np.zeros(len(triples), dtype=bool)
    held_out[chosen["valid"] + chosen["test"]] = True
    # Triples keep generation order inside each split (the files read naturally).
    return (triples[~held_out], triples[np.sort(chosen["valid"]).astype(np.int64)],
            triples[np.sort(chosen["test"]).astype(np.int64)])


# --------------------------------------------------------------------------- modalities
def image_counts(rng: np.random.Generator, n: int, max_images: int) -> np.ndarray:
    """Images per entity: 0 with probability NO_IMAGE, else k in 1..max_images with weight max_images + 2 - k."""
    if max_images == 0:
        return np.zeros(n, dtype=np.int64)
    weights = np.arange(max_images + 1, 1, -1, dtype=np.float64)
    probs = np.concatenate([[NO_IMAGE], (1 - NO_IMAGE) * weights / weights.sum()])
    return rng.choice(max_images + 1, size=n, p=probs)


def draw_image(rng: np.random.Generator, size: int, colour: str, shape: str, scale: str) -> Image.Image:
    """One RGB picture of a ``scale``-sized ``colour`` ``shape`` on a plain light-grey background.

    Clear on purpose (frozen ImageNet encoders should see colour, shape and size): a flat background
    of random brightness with a faint tint, the shape filled with the colour (a random brightness
    change and a little hue noise), a random rotation, a random position away from the border (the
    encoders' centre crop keeps it). ``small`` shapes span about 30-40% of the picture, ``large``
    about 60-72%.
    """
    grey = rng.uniform(175, 240)
    background = tuple(int(np.clip(grey + rng.normal(0, 4), 0, 255)) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    shade = rng.uniform(0.85, 1.1)  # one brightness change for the three channels, then a little hue noise
    fill = tuple(int(np.clip(c * shade + rng.normal(0, 8), 0, 255)) for c in COLOURS[colour])
    half = (rng.uniform(0.15, 0.2) if scale == "small" else rng.uniform(0.3, 0.36)) * size
    margin = half + 0.07 * size
    cx, cy = rng.uniform(margin, size - margin, size=2) if margin < size / 2 else (size / 2, size / 2)
    angle = rng.uniform(0, 2 * np.pi)
    if shape == "circle":
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=fill)
    else:
        corners = 4 if shape == "square" else 3
        radius = half * (np.sqrt(2) if shape == "square" else 1.25)
        radius = min(radius, cx, cy, size - cx, size - cy)  # stay inside the picture
        points = [(cx + radius * np.cos(angle + 2 * np.pi * j / corners),
                   cy + radius * np.sin(angle + 2 * np.pi * j / corners)) for j in range(corners)]
        draw.polygon(points, fill=fill)
    return image


def proper_name(rng: np.random.Generator) -> str:
    """A made-up name of two or three syllables, e.g. ``Kavoren``."""
    return "".join(SYLLABLES[i] for i in rng.integers(len(SYLLABLES), size=int(rng.integers(2, 4)))).capitalize()


def article(word: str) -> str:
    """The indefinite article for ``word``."""
    return "an" if word[0] in "aeiou" else "a"


def describe(rng: np.random.Generator, values: dict[str, str]) -> str:
    """A short, plain English description that names some of the entity's attributes (see TEXT_MENTION).

    Each mentioned value is said with its plain word (first synonym) 70% of the time, else another
    synonym; size, colour and shape are adjectives of the opening sentence, the taste gets a sentence
    of its own; at most one distractor sentence (half of the texts) mentions no attribute.
    """
    said = {kind: (SYNONYMS[value][0] if rng.random() < 0.7 else str(rng.choice(SYNONYMS[value][1:])))
            for kind, value in values.items() if rng.random() < TEXT_MENTION[kind]}
    name, noun = proper_name(rng), str(rng.choice(NOUNS))
    phrase = " ".join([said[k] for k in ("size", "colour", "shape") if k in said] + [noun])
    opener = int(rng.integers(3))
    if opener == 0:
        sentences = [f"{name} is {article(phrase)} {phrase}."]
    elif opener == 1:
        sentences = [f"{article(phrase).capitalize()} {phrase} known as {name}."]
    else:
        sentences = [f"{name}, {article(phrase)} {phrase}."]
    if "taste" in said:
        sentences.append(str(rng.choice(["It tastes {}.", "Its taste is {}.", "Its flavour is {}."]))
                         .format(said["taste"]))
    if rng.random() < 0.5:
        filler = FILLERS[int(rng.integers(len(FILLERS)))].format(place=str(rng.choice(PLACES)))
        sentences.insert(int(rng.integers(1, len(sentences) + 1)), filler)
    return " ".join(sentences)


# --------------------------------------------------------------------------- writing
def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")


def make_toy(out: Path, seed: int, **sizes) -> Path:
    """Write the toy dataset for ``seed`` into ``out`` and return ``out``.

    ``sizes`` are :class:`ToyOptions` fields (``entities=800, relations=8, ...``). The dataset is
    built in a temporary sibling folder and renamed into place; an existing ``out`` is replaced only
    when it is empty or a previous toy dataset (it has ``attributes.tsv``), otherwise ConfigError.
    """
    unknown = sorted(set(sizes) - {f.name for f in dataclasses.fields(ToyOptions)})
    if unknown:
        raise ConfigError(f"unknown toy option(s): {', '.join(unknown)}")
    opts = ToyOptions(**sizes)
    opts.validate()
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "attributes.tsv").is_file())):
        raise ConfigError(f"{out} exists and is not a toy dataset; refusing to overwrite it")

    graph_ss, image_ss, text_ss = np.random.SeedSequence(seed).spawn(3)
    graph_rng = np.random.default_rng(graph_ss)
    n = opts.entities
    width = max(4, len(str(n - 1)))
    entities = [f"e{i:0{width}d}" for i in range(n)]
    attributes = draw_attributes(graph_rng, n)
    rules = draw_rules(graph_rng, opts.relations)
    relations = [relation_name(k, rule) for k, rule in enumerate(rules)]
    triples = draw_triples(graph_rng, opts, attributes, rules)
    splits = split_triples(graph_rng, triples, n, len(rules), opts.valid_fraction, opts.test_fraction)
    values = [{kind: ATTRIBUTES[kind][attributes[kind][e]] for kind in ATTRIBUTES} for e in range(n)]

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _write_lines(tmp / "entity2id.txt", [f"{name} {i}" for i, name in enumerate(entities)])
    _write_lines(tmp / "relation2id.txt", [f"{name} {i}" for i, name in enumerate(relations)])
    for split_name, rows in zip(("train", "valid", "test"), splits):
        _write_lines(tmp / f"{split_name}.txt",
                     [f"{entities[h]} {relations[r]} {entities[t]} ." for h, r, t in rows.tolist()])
    _write_lines(tmp / "attributes.tsv", ["entity\t" + "\t".join(ATTRIBUTES)] +
                 [entities[e] + "\t" + "\t".join(values[e].values()) for e in range(n)])
    _write_lines(tmp / "relation_rules.tsv",
                 ["relation\thead_attribute\thead_value\ttail_attribute\ttail_value"] +
                 [f"{name}\t{kind}\t{v}\t{kind}\t{w}" for name, r in zip(relations, rules)
                  for kind, m in zip(r.kinds, r.maps) for v, w in m.items()])

    text_rng = np.random.default_rng(text_ss)
    has_text = text_rng.random(n) >= opts.missing_text
    descriptions = [describe(text_rng, values[e]) if has_text[e] else None for e in range(n)]
    _write_lines(tmp / "descriptions.tsv", ["entity\tdescription"] +
                 [f"{entities[e]}\t{d}" for e, d in enumerate(descriptions) if d is not None])

    image_rng = np.random.default_rng(image_ss)
    counts = image_counts(image_rng, n, opts.max_images)
    for e in range(n):
        if counts[e] == 0:
            continue
        folder = tmp / "images" / entities[e]
        folder.mkdir(parents=True)
        for k in range(int(counts[e])):
            colour, shape, scale = values[e]["colour"], values[e]["shape"], values[e]["size"]
            if image_rng.random() < opts.image_noise:
                colour, shape = str(image_rng.choice(list(COLOURS))), str(image_rng.choice(SHAPES))
            draw_image(image_rng, opts.image_size, colour, shape, scale).save(folder / f"{k}.png", format="PNG")

    train_degree = np.bincount(splits[0][:, [0, 2]].ravel(), minlength=n)
    stats = {
        "entities": n, "relations": len(rules),
        "train": len(splits[0]), "valid": len(splits[1]), "test": len(splits[2]),
        "with_images": int((counts > 0).sum()), "images": int(counts.sum()),
        "with_text": int(has_text.sum()),
        "train_degree_le3": int((train_degree <= 3).sum()),
        "train_degree_median": float(np.median(train_degree)), "train_degree_max": int(train_degree.max()),
        "test_long_tail": int((np.minimum(train_degree[splits[2][:, 0]], train_degree[splits[2][:, 2]]) <= 3).sum()),
    }
    (tmp / "README.md").write_text(_readme(seed, opts, relations, rules, stats), encoding="utf-8", newline="\n")

    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def _readme(seed: int, opts: ToyOptions, relations: list[str], rules: list[Rule], stats: dict) -> str:
    n = stats["entities"]
    pct = lambda k: f"{stats[k]} ({100 * stats[k] / n:.1f}%)"  # noqa: E731
    options = "\n".join(f"| `{f.name}` | {getattr(opts, f.name)} |" for f in dataclasses.fields(ToyOptions))
    def cell(rule: Rule, kind: str) -> str:
        maps = dict(zip(rule.kinds, rule.maps))
        return ", ".join(f"{v}->{w}" for v, w in maps[kind].items()) if kind in maps else "(free)"

    rule_rows = "\n".join(f"| `{name}` | " + " | ".join(cell(r, kind) for kind in ATTRIBUTES) + " |"
                          for name, r in zip(relations, rules))
    return f"""# Toy multi-modal knowledge graph (seed {seed})

Synthetic dataset written by `momok toy --seed {seed}` (module `momok.data.toy`, whose docstring explains
exactly how the signal is planted). Same layout as the real benchmarks: `entity2id.txt`,
`relation2id.txt`, `train.txt`, `valid.txt`, `test.txt`, `descriptions.tsv`, `images/<entity>/<k>.png`.
The latent truth is in `attributes.tsv` (entity -> colour, shape, size, taste) and `relation_rules.tsv`.

## Attributes and where they show
| attribute | values | image | text |
|---|---|---|---|
| colour | {", ".join(COLOURS)} | fill colour | in ~{TEXT_MENTION["colour"]:.0%} of descriptions |
| shape | {", ".join(SHAPES)} | drawn shape | in ~{TEXT_MENTION["shape"]:.0%} |
| size | {", ".join(SIZES)} | drawn size | in ~{TEXT_MENTION["size"]:.0%} |
| taste | {", ".join(TASTES)} | never | in ~{TEXT_MENTION["taste"]:.0%} |

## Relations (a share {opts.rule_noise} of the non-anchor triples ignores the rule)
A rule triple's tail has, for each of the three kinds its relation maps, the value that the kind's
permutation gives the head's value; the fourth kind is free (`relation_rules.tsv`: one row per head value).

| relation | colour | shape | size | taste |
|---|---|---|---|---|
{rule_rows}

## Statistics
- entities: {n}; relations: {stats["relations"]}
- triples: train {stats["train"]}, valid {stats["valid"]}, test {stats["test"]}
  (every valid/test entity and relation occurs in train)
- entities with at least one image: {pct("with_images")}; images: {stats["images"]}
  ({opts.image_size}x{opts.image_size} RGB PNG)
- entities with a description: {pct("with_text")}
- train degree: median {stats["train_degree_median"]:g}, max {stats["train_degree_max"]};
  entities with at most 3 train triples: {pct("train_degree_le3")};
  test triples with such an entity as head or tail: {stats["test_long_tail"]} of {stats["test"]}

## Options
| option | value |
|---|---|
{options}
"""


# --------------------------------------------------------------------------- CLI
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``momok toy``; defaults and meanings come from :class:`ToyOptions`."""
    parser.add_argument("--out", type=Path, required=True, help="folder to write (replaced if it is a toy dataset)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    helps = {
        "entities": "number of entities", "relations": "number of relations",
        "triples": "unique triples over all splits", "anchors": "anchor triples per entity (its least degree)",
"valid_fraction": "share of triples in valid",
        "test_fraction": "share of triples in test", "rule_noise": "share of triples that ignore the relation rule",
        "zipf": "Zipf exponent of entity activity (larger = longer tail)", "max_images": "most images per entity",
        "image_size": "image width and height in pixels", "image_noise": "share of images of a random colour/shape",
        "missing_text": "share of entities without a description",
    }
    for f in dataclasses.fields(ToyOptions):
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=type(f.default), default=f.default,
                            help=f"{helps[f.name]} (default {f.default})")


def run(args: argparse.Namespace) -> int:
    sizes = {f.name: getattr(args, f.name) for f in dataclasses.fields(ToyOptions)}
    started = time.perf_counter()
    out = make_toy(args.out, args.seed, **sizes)
    print((out / "README.md").read_text(encoding="utf-8").split("## Statistics\n", 1)[1].split("\n## ", 1)[0].rstrip())
    print(f"wrote {out} in {time.perf_counter() - started:.2f}s")
    return 0
