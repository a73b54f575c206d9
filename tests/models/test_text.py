"""Text normalisation: tokens, slang per channel kind, negation, the lexicon prior, odd input, TOML edits."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from models.text import (
    TextNormalizer,
    kind_for_channel,
    load_taxonomy,
    mention_text,
    read_taxonomy_file,
    reload_taxonomies,
    require_text,
)

NORM = TextNormalizer()


def words(text: str, channel: str | None = "twitter") -> list[str]:
    return NORM.normalise(text, channel).words


def test_urls_handles_hashtags_emoji_emoticons_become_tokens() -> None:
    out = words(
        "@AcmeHelp see https://t.co/AbC and www.acme.com #CustomerService 😡 :( <3 mail me at a.b@c.com"
    )
    assert out[:3] == ["<user>", "see", "<url>"]
    assert out.count("<url>") == 2
    assert "<hashtag>" in out and "customer" in out and "service" in out
    assert "😡" in out and "<sad>" in out and "<heart>" in out
    assert "<email>" in out


def test_elongations_collapse_and_add_emphasis() -> None:
    plain = NORM.normalise("good", "twitter")
    long = NORM.normalise("goooood", "twitter")
    assert long.words == ["good"]
    assert long.compound > plain.compound > 0
    assert words("sooo slooow") == ["so", "slow"]


def test_abbreviations_expand() -> None:
    assert words("pls thx u r the best, smh") == [
        "please",
        "thanks",
        "you",
        "are",
        "the",
        "best",
        "shaking",
        "my",
        "head",
    ]


@pytest.mark.parametrize(
    ("token", "plain", "sign"),
    [
        ("pwn3d", "owned", 1),
        ("hax0r", "hacker", -1),
        ("w@r3z", "software", -1),
        ("suxx0rs", "sucks", -1),
        ("r0xx0rs", "rocks", 1),
    ],
)
def test_leetspeak_and_gamer_slang_map_to_plain_words_with_polarity(
    token: str, plain: str, sign: int
) -> None:
    n = NORM.normalise(f"this {token}", "forum")
    assert plain in n.words
    assert (n.compound > 0) == (sign > 0) and n.compound != 0


def test_tables_differ_per_channel_kind() -> None:
    assert kind_for_channel("forum") == "forum" and kind_for_channel("twitter") == "microblog"
    assert words("gg wp", "forum") == ["good", "game", "well", "played"]
    assert words("gg wp", "twitter") == ["gg", "wp"]
    assert words("kr", "email") == ["kind", "regards"]
    assert kind_for_channel(None) == kind_for_channel("some-new-channel")


def test_negation_scope_flips_polarity_until_punctuation() -> None:
    n = NORM.normalise("The crew was not helpful at all. Great seats though", "twitter")
    assert n.negated_words == ["helpful", "at", "all"]
    assert NORM.normalise("not good", "twitter").compound < 0 < NORM.normalise("good", "twitter").compound
    assert NORM.normalise("no problem", "twitter").compound > 0
    # "but" ends the scope and shifts weight to what follows.
    assert NORM.normalise("not bad but the food was awful", "twitter").negated_words == ["bad"]


def test_negated_words_hash_to_other_features() -> None:
    a = set(NORM.normalise("good").features)
    b = set(NORM.normalise("not good").features)
    assert a - b, "a negated word must not share the plain word's feature"


def test_keywords_skip_stop_words_and_put_hashtags_first() -> None:
    n = NORM.normalise("my luggage was lost again and nobody helps #UnitedFail", "twitter")
    assert n.keywords[:2] == ["united", "fail"]
    assert "luggage" in n.keywords and "my" not in n.keywords and "and" not in n.keywords


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "😂😂😂",
        "🙏🏽👍🏻❤️‍🔥",
        "https://a.b/c http://x.y/z?q=1",
        "@a @b @c",
        "!!!???...",
        "x" * 10_000,
        "word " * 2_000,
        "Das ist nicht gut",
        "这家航空公司的服务太差了",
        "خدمة سيئة جدا",
        "\x00\ud800 broken surrogate",
        "#",
        "@",
        "http://",
        ":):(:D",
    ],
)
def test_odd_text_never_raises(text: str) -> None:
    n = NORM.normalise(text, "twitter")
    assert -1.0 <= n.compound <= 1.0
    assert all(isinstance(k, int | str) for k in n.features)
    assert len(n.words) <= 5000


def test_long_text_is_read_up_to_max_chars() -> None:
    n = TextNormalizer(max_chars=100).normalise("bad " * 5000, "twitter")
    assert len(n.words) == 25


def test_mention_dicts_with_bad_fields_read_as_empty_for_prediction() -> None:
    assert mention_text({"text": None}) == "" and mention_text(["not", "a", "dict"]) == ""
    assert NORM.normalise_one({"text": 42, "channel": 7}).words == []
    with pytest.raises(ValueError, match="text: expected a string, got list"):
        require_text({"text": ["x"]})
    with pytest.raises(ValueError, match="mention: expected a dict"):
        require_text("just text")


def test_hashing_is_stable_and_pickles() -> None:
    a = NORM.normalise("Flight delayed 3 hours, thanks for nothing @acme", "twitter").features
    clone = pickle.loads(pickle.dumps(NORM))
    b = clone.normalise("Flight delayed 3 hours, thanks for nothing @acme", "twitter").features
    assert a == b
    assert max(k for k in a if isinstance(k, int)) < 2**NORM.n_bits


def test_prior_tracks_vader_on_plain_english() -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    for text in [
        "I love this!",
        "This is terrible.",
        "The flight leaves at 5pm",
        "The service was not good.",
    ]:
        ours = NORM.normalise(text).compound
        theirs = vader.polarity_scores(text)["compound"]
        assert abs(ours - theirs) < 0.35, (text, ours, theirs)


def test_taxonomy_dir_overrides_shipped_files_without_code(tmp_path: Path) -> None:
    (tmp_path / "forum.toml").write_text(
        '[slang]\nzomgbug = { means = "severe bug", polarity = -3.0 }\n', encoding="utf-8"
    )
    custom = TextNormalizer(taxonomy_dir=str(tmp_path))
    n = custom.normalise("zomgbug again", "forum")
    assert n.words[:2] == ["severe", "bug"] and n.compound < -0.3
    # The shipped base table still applies, and the shipped normaliser is unaffected.
    assert custom.normalise("thx", "forum").words == ["thanks"]
    assert NORM.normalise("zomgbug", "forum").words == ["zomgbug"]


def test_invalid_toml_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "review.toml").write_text("[slang\nbroken", encoding="utf-8")
    with pytest.raises(ValueError, match="review.toml is not valid TOML"):
        TextNormalizer(taxonomy_dir=str(tmp_path)).normalise("hi", "review")
    reload_taxonomies()


def test_shipped_files_load() -> None:
    assert read_taxonomy_file("base.toml")["channels"]["twitter"] == "microblog"
    for kind in ("microblog", "forum", "review", "formal", "social", "longform"):
        tax = load_taxonomy(kind)
        assert tax.kind == kind and tax.lexicon and tax.negations


def test_edited_tables_apply_after_reload(tmp_path: Path) -> None:
    from models.department import DepartmentClassifier

    (tmp_path / "forum.toml").write_text('[abbreviations]\nnvm = "never mind"\n', encoding="utf-8")
    (tmp_path / "departments.toml").write_text(
        'default = "care"\n[departments.care]\nkeywords = ["help"]\n', encoding="utf-8"
    )
    norm = TextNormalizer(taxonomy_dir=str(tmp_path))
    dep = DepartmentClassifier(normalizer=norm)
    assert norm.normalise("wtb", "forum").words == ["wtb"] and dep.classes == ("care",)
    (tmp_path / "forum.toml").write_text('[abbreviations]\nwtb = "want to buy"\n', encoding="utf-8")
    (tmp_path / "departments.toml").write_text(
        'default = "care"\n[departments.care]\nkeywords = ["help"]\n[departments.shop]\nkeywords = ["buy"]\n',
        encoding="utf-8",
    )
    reload_taxonomies()
    assert norm.normalise("wtb", "forum").words == ["want", "to", "buy"]
    assert dep.classes == ("care", "shop") and dep.predict_one({"text": "wtb", "channel": "forum"}) == "shop"


def test_negated_positions_and_text_as_read() -> None:
    n = NORM.normalise("The crew was not helpful at all. Great seats", "twitter")
    assert [n.words[i] for i in n.negated_at] == n.negated_words == ["helpful", "at", "all"]
    assert n.text == "The crew was not helpful at all. Great seats"
    assert TextNormalizer(max_chars=10).normalise("abcdefghij klmnop").text == "abcdefghij"


def test_lexicons_come_from_the_installed_wheels() -> None:
    from models.lexicons import LEXICON_NAMES, shared_lexicons

    lex = shared_lexicons()
    assert set(lex.sizes) == set(LEXICON_NAMES)
    assert lex.sizes["vader"] > 7000 and lex.sizes["pattern"] > 1000 and lex.sizes["emoji"] > 700
    vader, pattern, _ = lex.scores("disappointing")  # an inflection found through its stem
    assert vader < 0 and pattern < 0
    assert lex.scores("😡")[2] < 0 < lex.scores("❤")[2]
    assert pickle.loads(pickle.dumps(lex)) is lex


def test_lexicon_features_follow_negation() -> None:
    from models.sentiment_features import lexicon_features

    plain = lexicon_features(NORM.normalise("the service was good", "twitter"))
    negated = lexicon_features(NORM.normalise("the service was not good", "twitter"))
    assert plain["_v_ps"] > 0 and "_v_ns" not in plain
    assert negated["_v_ns"] > 0 and "_v_ps" not in negated and negated["_v_last"] < 0
    # The same brand words in any domain carry no lexicon signal at all.
    assert lexicon_features(NORM.normalise("@united flight 1234 to Denver", "twitter")) == {}
